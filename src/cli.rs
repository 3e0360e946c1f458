//! The command line: what the user typed (clap), then a validated [`Command`].

use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::kitchen::{KitchenConfig, Role};
use crate::queue::{BackendConfig, Capacity, Mode, RedisOptions};
use crate::serve::ServeConfig;

/// Asynchronous work through a queue: chefs make dishes, diners eat them.
///
/// With no subcommand, `kitchen` runs the tutorial's kitchen in one process:
/// 3 chefs and 2 diners around a queue of 10 on an in-process channel, until
/// Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "kitchen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Chefs and diners in one process (what bare `kitchen` does).
    Run(RunArgs),
    /// Chefs only, feeding diners in other processes (needs --backend redis).
    Chef(ChefArgs),
    /// Diners only, the tutorial's listener: eat until Ctrl-C (needs --backend redis).
    Diner(DinerArgs),
    /// The web entry: the tutorial's page, /prodcons and /pubsub, and a JSON API.
    // Queue options that mean nothing to a server that puts one dish per
    // request and never waits on Redis stay out of its help.
    #[command(
        mut_arg("capacity", |a| a.help(
            "The most dishes waiting at once; a request that finds it full waits up to --full-wait-ms, then gets 503"
        )),
        mut_arg("mode", |a| a.hide(true)),
        mut_arg("batch", |a| a.hide(true)),
        mut_arg("heartbeat_ttl", |a| a.hide(true)),
        mut_arg("reconnect_timeout", |a| a.hide(true))
    )]
    Serve(ServeArgs),
    /// What is in Redis now: queue length and capacity, live diners and what
    /// each holds, dead letters, channel subscribers (needs --backend redis).
    Info(InfoArgs),
}

/// Where the queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// An in-process crossbeam channel; needs nothing installed.
    Local,
    /// A Redis server, shared by any number of processes.
    Redis,
}

#[derive(Debug, Args)]
struct QueueArgs {
    /// Where the queue lives.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    backend: BackendKind,
    /// Redis mode [default: list]. Capacity does not apply to pubsub.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Redis server, database, user and password: redis://[user:password@]host[:port][/db]
    /// (rediss://, TLS, is not built in).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/5",
        hide_env_values = true
    )]
    redis_url: String,
    /// The Redis list that carries dishes in list mode.
    #[arg(long, default_value = "task:prodcons:queue")]
    queue: String,
    /// The Redis channel that carries dishes in pubsub mode.
    #[arg(long, default_value = "task:pubsub:channel")]
    channel: String,
    /// The most dishes waiting at once; chefs wait while it is full (list
    /// and local; pubsub holds nothing, so it has no capacity).
    #[arg(long, value_name = "N", default_value_t = 10, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// No bound on waiting dishes, as the tutorial's Redis list had.
    #[arg(long, conflicts_with = "capacity")]
    unbounded: bool,
    /// Redis: dishes per round trip. List: chefs push and diners take up to N
    /// (still bounded, still at least once). Pubsub: chefs publish up to N.
    /// [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: Option<u32>,
    /// Redis list: a diner silent this long is presumed dead and its dishes
    /// go back on the queue.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    heartbeat_ttl: Duration,
    /// Redis: how long to keep reconnecting to a server that went away before
    /// failing the run.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    reconnect_timeout: Duration,
    /// How long the result of a dish queued with `POST /dishes` can be looked
    /// up (diners record it; `kitchen serve` keeps it on the local backend).
    #[arg(long, value_name = "SECS", default_value = "86400", value_parser = parse_secs)]
    result_ttl: Duration,
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    queue: QueueArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PaceArgs {
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// After each dish, chefs and diners nap a uniform random time below MS; 0 = no naps.
    #[arg(long, value_name = "MS", default_value_t = 1000, allow_negative_numbers = true, value_parser = parse_ms)]
    max_sleep_ms: u64,
    /// Seed for reproducible dish numbers and naps.
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = parse_seed)]
    seed: Option<u64>,
    /// No per-dish lines (a live status line on a terminal instead).
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as one JSON object on stdout (the last line).
    #[arg(long)]
    json: bool,
    /// End each per-dish line with the dish's id (` [id 0123456789abcdef-5]`),
    /// to follow a dish across processes.
    #[arg(long)]
    ids: bool,
}

#[derive(Debug, Args)]
struct ChefsArg {
    /// Chef threads.
    #[arg(long, value_name = "N", default_value_t = 3, allow_negative_numbers = true, value_parser = threads())]
    chefs: u32,
}

#[derive(Debug, Args)]
struct DinersArg {
    /// Diner threads.
    #[arg(long, value_name = "N", default_value_t = 2, allow_negative_numbers = true, value_parser = threads())]
    diners: u32,
}

#[derive(Debug, Args)]
struct DishesArg {
    /// Stop after N dishes made in total (else run until Ctrl-C).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_dishes)]
    dishes: Option<u64>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    chefs: ChefsArg,
    #[command(flatten)]
    diners: DinersArg,
    #[command(flatten)]
    dishes: DishesArg,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    pace: PaceArgs,
}

#[derive(Debug, Args)]
struct ChefArgs {
    #[command(flatten)]
    chefs: ChefsArg,
    #[command(flatten)]
    dishes: DishesArg,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    pace: PaceArgs,
}

#[derive(Debug, Args)]
struct DinerArgs {
    #[command(flatten)]
    diners: DinersArg,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    pace: PaceArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    bind: String,
    /// Web worker threads: connections served at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// In-process diner threads (local backend; 0 = none, dishes wait).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1024))]
    diners: u32,
    /// In-process diners nap a uniform random time below MS per dish; 0 = no naps.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    max_sleep_ms: u64,
    /// The most results kept in memory on the local backend; the oldest go first.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_results: u64,
    /// Seconds a client gets to send a whole request, or to idle between two.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    client_timeout: Duration,
    /// How long a request waits for room in a full queue before its 503 (at most 1000).
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=1000))]
    full_wait_ms: u64,
    #[command(flatten)]
    queue: QueueArgs,
}

/// What to do, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run chefs and/or diners and print a summary.
    Kitchen {
        /// The run.
        config: KitchenConfig,
        /// Summary as JSON on stdout instead of a table on stderr.
        json: bool,
    },
    /// Serve HTTP until stopped.
    Serve {
        /// The address to bind, as typed.
        bind: String,
        /// The server.
        config: ServeConfig,
    },
    /// Print what is in Redis now.
    Info {
        /// Where to look.
        redis: RedisOptions,
        /// The capacity chefs keep, to show beside the length.
        capacity: Capacity,
        /// JSON instead of a table.
        json: bool,
    },
}

impl Cli {
    /// Validates what clap parsed; errors are usage errors (exit 2).
    pub fn into_command(self) -> Result<Command, clap::Error> {
        match self.command {
            None => self.run.into_command(Role::Run),
            Some(Sub::Run(a)) => a.into_command(Role::Run),
            Some(Sub::Chef(a)) => {
                kitchen_command(Role::Chef, a.queue, a.pace, a.chefs.chefs, 0, a.dishes.dishes)
            }
            Some(Sub::Diner(a)) => kitchen_command(Role::Diner, a.queue, a.pace, 0, a.diners.diners, None),
            Some(Sub::Serve(a)) => a.into_command(),
            Some(Sub::Info(a)) => match a.queue.backend_config()? {
                BackendConfig::Redis(redis) => Ok(Command::Info {
                    capacity: a.queue.capacity(&BackendConfig::Redis(redis.clone()))?,
                    redis,
                    json: a.json,
                }),
                BackendConfig::Local => Err(usage(
                    ErrorKind::ArgumentConflict,
                    "`kitchen info` needs --backend redis: a local queue lives and dies inside one `kitchen run`".into(),
                )),
            },
        }
    }
}

impl ServeArgs {
    fn into_command(self) -> Result<Command, clap::Error> {
        if self.queue.mode.is_some() {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                "`kitchen serve` takes no --mode: /prodcons uses the list and /pubsub the channel"
                    .into(),
            ));
        }
        let backend = self.queue.backend_config()?;
        let capacity = self.queue.capacity(&backend)?;
        Ok(Command::Serve {
            bind: self.bind,
            config: ServeConfig {
                backend,
                capacity,
                diners: self.diners as usize,
                workers: self.workers as usize,
                max_sleep: Duration::from_millis(self.max_sleep_ms),
                result_ttl: self.queue.result_ttl,
                max_results: usize::try_from(self.max_results).unwrap_or(usize::MAX),
                client_timeout: self.client_timeout,
                full_wait: Duration::from_millis(self.full_wait_ms),
            },
        })
    }
}

impl RunArgs {
    fn into_command(self, role: Role) -> Result<Command, clap::Error> {
        kitchen_command(
            role,
            self.queue,
            self.pace,
            self.chefs.chefs,
            self.diners.diners,
            self.dishes.dishes,
        )
    }
}

fn kitchen_command(
    role: Role,
    queue: QueueArgs,
    pace: PaceArgs,
    chefs: u32,
    diners: u32,
    dishes: Option<u64>,
) -> Result<Command, clap::Error> {
    let backend = queue.backend_config()?;
    if backend == BackendConfig::Local && role != Role::Run {
        let sub = if role == Role::Chef { "chef" } else { "diner" };
        return Err(usage(
            ErrorKind::ArgumentConflict,
            format!(
                "`kitchen {sub}` needs --backend redis: a local queue lives inside one process, so use `kitchen run` for it"
            ),
        ));
    }
    let capacity = queue.capacity(&backend)?;
    Ok(Command::Kitchen {
        config: KitchenConfig {
            role,
            backend,
            capacity,
            chefs: chefs as usize,
            diners: diners as usize,
            dishes,
            duration: pace.duration,
            max_sleep: Duration::from_millis(pace.max_sleep_ms),
            seed: pace.seed,
            quiet: pace.quiet,
            ids: pace.ids,
        },
        json: pace.json,
    })
}

impl QueueArgs {
    fn capacity(&self, backend: &BackendConfig) -> Result<Capacity, clap::Error> {
        if *backend == BackendConfig::Local && self.capacity > MAX_LOCAL_CAPACITY {
            return Err(usage(
                ErrorKind::ValueValidation,
                format!(
                    "--capacity {} is too large for the local queue, which allocates every slot up front: use at most {MAX_LOCAL_CAPACITY}, or --unbounded",
                    self.capacity
                ),
            ));
        }
        Ok(if self.unbounded {
            Capacity::Unbounded
        } else {
            Capacity::Bounded(self.capacity as usize)
        })
    }

    fn backend_config(&self) -> Result<BackendConfig, clap::Error> {
        match self.backend {
            BackendKind::Local => {
                if self.mode.is_some() {
                    return Err(usage(
                        ErrorKind::ArgumentConflict,
                        "--mode applies to --backend redis; the local backend is a queue".into(),
                    ));
                }
                if self.batch.is_some() {
                    return Err(usage(
                        ErrorKind::ArgumentConflict,
                        "--batch applies to --backend redis, where it saves round trips; the local queue has none to save".into(),
                    ));
                }
                Ok(BackendConfig::Local)
            }
            BackendKind::Redis => Ok(BackendConfig::Redis(RedisOptions {
                url: {
                    check_redis_url(&self.redis_url).map_err(|e| {
                        usage(
                            ErrorKind::ValueValidation,
                            format!("invalid --redis-url: {e}"),
                        )
                    })?;
                    self.redis_url.clone()
                },
                mode: self.mode.unwrap_or(Mode::List),
                queue: self.queue.clone(),
                channel: self.channel.clone(),
                batch: self.batch.unwrap_or(1) as usize,
                heartbeat_ttl: self.heartbeat_ttl,
                reconnect_for: self.reconnect_timeout,
                result_ttl: self.result_ttl,
            })),
        }
    }
}

/// The most chef or diner threads one process starts.
pub const MAX_THREADS: u32 = 4096;

/// The largest in-process queue: crossbeam allocates every slot up front.
pub const MAX_LOCAL_CAPACITY: u32 = 1_000_000;

fn threads() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS))
}

fn usage(kind: ErrorKind, msg: String) -> clap::Error {
    Cli::command().error(kind, msg)
}

fn whole(s: &str, what: &str, min: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "`{s}` is not {what}: use a whole number from {min} up"
        )),
    }
}

fn parse_ms(s: &str) -> Result<u64, String> {
    whole(s, "a number of milliseconds", 0)
}

fn parse_dishes(s: &str) -> Result<u64, String> {
    whole(s, "a number of dishes", 1)
}

fn parse_seed(s: &str) -> Result<u64, String> {
    whole(s, "a seed", 0)
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds; try 10 or 0.5"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` seconds is too long"))
}

/// Checks `--redis-url`. Done after parsing, not as a clap value parser,
/// because clap's message would echo the URL, password included.
fn check_redis_url(s: &str) -> Result<(), String> {
    let ok_scheme = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| s.starts_with(p));
    if !ok_scheme {
        return Err("a Redis URL looks like redis://[user:password@]host[:port][/db]".to_owned());
    }
    #[cfg(feature = "redis")]
    crate::redis_mode::validate_url(s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("kitchen").chain(args.iter().copied()))?.into_command()
    }

    fn config(args: &[&str]) -> KitchenConfig {
        match parse(args) {
            Ok(Command::Kitchen { config, .. }) => config,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn bare_kitchen_is_the_tutorial() {
        assert_eq!(config(&[]), KitchenConfig::default());
        assert_eq!(config(&["run"]), KitchenConfig::default());
    }

    #[test]
    fn options_reach_the_config() {
        let c = config(&[
            "run",
            "--chefs",
            "7",
            "--diners",
            "1",
            "--capacity",
            "3",
            "--dishes",
            "50",
            "--max-sleep-ms",
            "0",
            "--seed",
            "9",
            "--duration",
            "1.5",
            "--quiet",
        ]);
        assert_eq!(
            (c.chefs, c.diners, c.capacity),
            (7, 1, Capacity::Bounded(3))
        );
        assert_eq!((c.dishes, c.seed, c.quiet), (Some(50), Some(9), true));
        assert_eq!(c.max_sleep, Duration::ZERO);
        assert_eq!(c.duration, Some(Duration::from_millis(1500)));
        assert_eq!(config(&["--unbounded"]).capacity, Capacity::Unbounded);
        assert!(config(&["--ids"]).ids && !config(&[]).ids);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--capacity", "0"][..],
            &["--chefs", "0"],
            &["--diners", "0"],
            &["--dishes", "0"],
            &["--chefs", "-1"],
            &["--capacity", "ten"],
            &["--duration", "0"],
            &["--duration", "-3"],
            &["--duration", "soon"],
            &["--max-sleep-ms", "-5"],
            &["--backend", "kafka"],
            &["--capacity", "3", "--unbounded"],
            &["--mode", "pubsub"],
            &["--batch", "8"],
            &["--backend", "redis", "--batch", "0"],
            &["chef"],
            &["diner"],
            &["--redis-url", "http://x", "--backend", "redis"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    fn serve(args: &[&str]) -> (String, ServeConfig) {
        match parse(args) {
            Ok(Command::Serve { bind, config }) => (bind, config),
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn serve_defaults_and_options() {
        let (bind, c) = serve(&["serve"]);
        assert_eq!(bind, "127.0.0.1:5000");
        assert_eq!(c, ServeConfig::default());
        let (bind, c) = serve(&[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "3",
            "--diners",
            "0",
            "--capacity",
            "4",
            "--result-ttl",
            "60",
            "--client-timeout",
            "0.5",
        ]);
        assert_eq!(bind, "127.0.0.1:0");
        assert_eq!(
            (c.workers, c.diners, c.capacity),
            (3, 0, Capacity::Bounded(4))
        );
        assert_eq!(c.result_ttl, Duration::from_secs(60));
        assert_eq!(c.client_timeout, Duration::from_millis(500));
        for bad in [
            &["serve", "--workers", "0"][..],
            &["serve", "--mode", "list", "--backend", "redis"],
            &["serve", "--result-ttl", "0"],
        ] {
            assert_eq!(parse(bad).map(|_| ()).expect_err("refused").exit_code(), 2);
        }
    }

    #[test]
    fn redis_roles_take_redis_options() {
        let c = config(&[
            "diner",
            "--backend",
            "redis",
            "--mode",
            "pubsub",
            "--queue",
            "q",
        ]);
        assert_eq!(c.role, Role::Diner);
        match c.backend {
            BackendConfig::Redis(o) => {
                assert_eq!((o.mode, o.queue.as_str()), (Mode::Pubsub, "q"));
                assert_eq!(o.channel, "task:pubsub:channel");
            }
            other => panic!("{other:?}"),
        }
    }
}
