//! The command line: what the user typed (clap), then a validated [`Command`].
//!
//! Two stages, as ripgrep reads its flags. Clap parses what each subcommand
//! accepts: each takes only the flags it uses, so its `--help` lists only
//! those. Then [`Cli::parse_command_from`] refuses the combinations in which
//! a flag the user typed would be ignored (`--capacity` with `--mode pubsub`,
//! `--diners` on a Redis `kitchen serve`), each with a line that says why,
//! and builds the [`Command`]. Every usage error carries the usage line of
//! the subcommand typed. Every default is read from [`crate::defaults`].

use std::ffi::OsString;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::dead::DeadCommand;
use crate::defaults;
use crate::enqueue::EnqueueConfig;
use crate::exec::Exec;
use crate::kitchen::work::Work;
use crate::kitchen::{KitchenConfig, Role};
use crate::queue::{BackendConfig, Capacity, Mode, RedisOptions, Retry, TlsFiles, Which};
use crate::serve::ServeConfig;

/// Asynchronous work through a queue: chefs make dishes, diners eat them.
///
/// With no subcommand, `kitchen` runs the tutorial's kitchen in one process:
/// chefs and diners around a bounded queue on an in-process channel, until
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
    /// Chefs only, feeding diners in other processes (Redis).
    Chef(ChefArgs),
    /// Diners only, the tutorial's listener: eat until Ctrl-C (Redis).
    Diner(DinerArgs),
    /// The web entry: the tutorial's page, /prodcons and /pubsub, and a JSON API.
    #[command(mut_arg("capacity", |a| a.help(
        "The most dishes waiting at once; a request that finds it full waits up to --full-wait-ms, then gets 503"
    )))]
    Serve(ServeArgs),
    /// Queue dishes with these payloads (Redis); `--wait` prints each result.
    Enqueue(EnqueueArgs),
    /// What is in Redis now: queue length and capacity, live diners and what
    /// each holds, dead letters, channel subscribers (Redis); `--watch`
    /// refreshes it every second.
    // Chefs record their bound in Redis; the flags are what to show when no
    // chef has run yet.
    #[command(
        mut_arg("capacity", |a| a.help(
            "The capacity to show when no chef has recorded one in Redis yet"
        )),
        mut_arg("unbounded", |a| a.help(
            "Show the queue as unbounded when no chef has recorded a capacity yet"
        ))
    )]
    Info(InfoArgs),
    /// Dead letters: list them, put them back on the queue, or delete them (Redis).
    Dead(DeadArgs),
}

/// `kitchen dead`'s three commands.
#[derive(Debug, Args)]
struct DeadArgs {
    #[command(subcommand)]
    action: DeadAction,
}

#[derive(Debug, Subcommand)]
enum DeadAction {
    /// The dead letters, newest first: id, attempts, when, reason, payload.
    List(DeadListArgs),
    /// Put dead letters back on the queue with fresh attempts: every id
    /// named, or none if one is not dead.
    Requeue(DeadPickArgs),
    /// Delete dead letters: every id named, or none if one is not dead.
    Purge(DeadPickArgs),
}

/// Where the dead letters are.
#[derive(Debug, Args)]
struct DeadPlaceArgs {
    #[command(flatten)]
    backend: RedisBackendArg,
    /// Whose dead letters: the list's (--queue), or with `stream` the stream's (--stream).
    #[arg(long, value_enum, default_value_t = Mode::List)]
    mode: Mode,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Debug, Args)]
struct DeadListArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Show at most the N newest (else all of them).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    place: DeadPlaceArgs,
}

#[derive(Debug, Args)]
struct DeadPickArgs {
    /// The ids of the dead letters (`kitchen dead list` shows them).
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    ids: Vec<String>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    place: DeadPlaceArgs,
}

/// Where the queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// An in-process crossbeam channel; needs nothing installed.
    Local,
    /// A Redis server, shared by any number of processes.
    Redis,
}

/// `--backend` of `run` and `serve`, which work on either.
#[derive(Debug, Args)]
struct BackendArg {
    /// Where the queue lives.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    backend: BackendKind,
}

/// `--backend` of the roles that exist only on Redis (`chef`, `diner`,
/// `info`): implied, out of their help, and still accepted, as scripts pass
/// `--backend redis`; `local` is refused.
#[derive(Debug, Args)]
struct RedisBackendArg {
    /// Always redis: the only backend shared between processes.
    #[arg(long, value_enum, default_value_t = BackendKind::Redis, hide = true)]
    backend: BackendKind,
}

/// Where Redis is and what kitchen's keys are called there.
#[derive(Debug, Args)]
struct RedisArgs {
    /// Redis server, database, user and password: redis://[user:password@]host[:port][/db],
    /// rediss://… for TLS, or redis+unix:///path/to/redis.sock?db=N.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = defaults::REDIS_URL,
        hide_env_values = true
    )]
    redis_url: String,
    /// The Redis list that carries dishes in list mode (results and dead
    /// letters are kept beside it).
    #[arg(long, default_value = defaults::QUEUE)]
    queue: String,
    /// The Redis channel that carries dishes in pubsub mode.
    #[arg(long, default_value = defaults::CHANNEL)]
    channel: String,
    /// The Redis stream that carries dishes in stream mode (dead letters
    /// are kept beside it).
    #[arg(long, default_value = defaults::STREAM)]
    stream: String,
    /// rediss://: trust this CA (PEM) instead of the system's, for a
    /// server whose certificate a private CA signed.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// rediss://: show the server this client certificate (PEM), for
    /// mutual TLS (`tls-auth-clients yes`); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// rediss://: the private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// --redis-url names any node of a Redis Cluster. A cluster has database
    /// 0 only: the default URL's /5 is ignored, a URL that names another
    /// database is refused.
    #[arg(long)]
    cluster: bool,
    /// List mode: spread the queue over N sub-queues in N hash slots (so
    /// over several masters of a cluster); chefs deal dishes round-robin,
    /// diners serve every shard, and the shards' bounds add up to --capacity.
    #[arg(long, value_name = "N", default_value_t = defaults::SHARDS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=defaults::MAX_SHARDS as u64))]
    shards: usize,
}

/// `--durable` of the roles that push dishes (`run`, `chef`, `serve`,
/// `enqueue`).
#[derive(Debug, Args)]
struct DurableArg {
    /// List and stream modes: a dish counts as made only once a replica
    /// holds it too (WAIT 1 after each push), so a failover loses no dish
    /// counted made.
    #[arg(long)]
    durable: bool,
}

/// `--group` of the roles that use a stream's consumer group (`run`,
/// `chef`, `diner`, `serve`).
#[derive(Debug, Args)]
struct GroupArg {
    /// Stream mode: the consumer group diners join (every group gets every
    /// dish; a new group starts from the oldest entry the stream holds).
    /// Chefs and the web entry report its backlog as `left` and depth.
    #[arg(long, value_name = "NAME", default_value = defaults::GROUP)]
    group: String,
}

/// `--mode` of the roles that use one mode (`run`, `chef`, `diner`).
#[derive(Debug, Args)]
struct ModeArg {
    /// Redis mode: list (each dish to one diner, nothing lost), pubsub
    /// (each dish to every subscribed diner) or stream (each consumer group
    /// gets every dish, each dish to one diner of a group, nothing lost).
    #[arg(long, value_enum, default_value_t = Mode::List)]
    mode: Mode,
}

/// `--mode` of `serve`, whose /prodcons uses the list or the stream and
/// whose /pubsub always uses the channel.
#[derive(Debug, Args)]
struct ServeModeArg {
    /// Redis: where /prodcons and POST /dishes put dishes, the list
    /// (default) or, with `stream`, the stream; /pubsub always publishes on
    /// --channel.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
}

/// `--mode` of `info`, which shows the list, the channel and the stream:
/// out of its help, and refused with that reason rather than clap's bare
/// "unexpected argument".
#[derive(Debug, Args)]
struct NoModeArg {
    #[arg(long, value_enum, hide = true)]
    mode: Option<Mode>,
}

/// The bound of the roles that put dishes (`run`, `chef`, `serve`), and of
/// `info`, which shows it.
#[derive(Debug, Args)]
struct CapacityArgs {
    /// The most dishes waiting at once; chefs wait while it is full (list
    /// and local; stream: what the slowest consumer group has not
    /// acknowledged; pubsub holds nothing, so it has no capacity).
    #[arg(long, value_name = "N", default_value_t = defaults::CAPACITY as u32, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// No bound on waiting dishes, as the tutorial's Redis list had.
    #[arg(long, conflicts_with = "capacity")]
    unbounded: bool,
}

/// `--batch` of the roles that talk to Redis in rounds (`run`, `chef`, `diner`).
#[derive(Debug, Args)]
struct BatchArg {
    /// Redis: dishes per round trip. List and stream: chefs add and diners
    /// take up to N (still bounded, still at least once). Pubsub: chefs
    /// publish up to N (at most 5 000: kitchen's scripts pass a batch to
    /// Redis's Lua, which unpacks no more than about 8 000 values).
    #[arg(long, value_name = "N", default_value_t = defaults::BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    batch: u32,
}

/// `--heartbeat-ttl` of the roles with list-mode diners (`run`, `diner`).
#[derive(Debug, Args)]
struct HeartbeatArg {
    /// Redis list and stream: a diner silent this long is presumed dead and
    /// its dishes go back on the queue (stream: to a live diner of its group).
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::HEARTBEAT_TTL), value_parser = parse_secs_arg)]
    heartbeat_ttl: Secs,
}

/// `--reconnect-timeout` of the roles that ride out an outage (`run`,
/// `chef`, `diner`); `serve` answers `503` at once instead.
#[derive(Debug, Args)]
struct ReconnectArg {
    /// Redis: how long to keep reconnecting to a server that went away before
    /// failing the run.
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::RECONNECT_FOR), value_parser = parse_secs_arg)]
    reconnect_timeout: Secs,
}

/// `--result-ttl` of the roles that record results (`run` and `diner` on
/// Redis, `serve`).
#[derive(Debug, Args)]
struct ResultTtlArg {
    /// How long the result of a dish queued with `POST /dishes` can be looked
    /// up (diners record it; `kitchen serve` keeps it on the local backend).
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::RESULT_TTL), value_parser = parse_secs_arg)]
    result_ttl: Secs,
}

/// What diners do with each dish (`run`, `diner`, `serve`).
#[derive(Debug, Args)]
struct WorkArgs {
    /// Run CMD through `sh -c` once per dish, the payload on its stdin (never
    /// in the command line), with KITCHEN_DISH_ID, KITCHEN_ATTEMPT and
    /// KITCHEN_QUEUE set. Exit 0 is eaten (stdout, up to 64 KiB, is the
    /// result); anything else is a failure. Without it, diners nap (the
    /// tutorial's simulation).
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// End a dish's command (its whole process group) after SECS: a failure.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "exec")]
    timeout: Option<Duration>,
    /// After the first Ctrl-C or SIGTERM, work in hand gets SECS; then it is
    /// ended and its dish given back to the queue.
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::SHUTDOWN_TIMEOUT), value_parser = parse_secs_arg)]
    shutdown_timeout: Secs,
    /// The largest payload a dish may carry, in bytes; a larger one is
    /// refused or dead-lettered (`kitchen serve` reads request bodies of
    /// 1 MiB at most, whatever this says: more is 413; and holds at most
    /// 64 times this, up to 64 MiB, of request bodies at once: more is 503).
    #[arg(long, value_name = "BYTES", default_value_t = defaults::MAX_PAYLOAD as u64, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    max_payload: u64,
    /// Tries per dish: a failed dish waits --retry-delay, then is tried
    /// again by any diner; after the last failed attempt it is dead
    /// (`kitchen dead list`). 1 = no retries.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_ATTEMPTS, allow_negative_numbers = true, value_parser = parse_attempts)]
    max_attempts: u32,
    /// The wait before a failed dish's second attempt, in seconds; it
    /// doubles on each attempt after, with jitter (0.5 to 1.5 times).
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::RETRY_DELAY), allow_negative_numbers = true, value_parser = parse_delay)]
    retry_delay: Secs,
    /// Redis: the most dead letters kept beside the queue; beyond it the
    /// oldest are trimmed (and counted, for `kitchen info`).
    #[arg(long, value_name = "N", default_value_t = defaults::DEAD_MAX as u64, value_parser = clap::value_parser!(u64).range(1..))]
    dead_max: u64,
}

impl WorkArgs {
    fn work(&self) -> Work {
        match &self.exec {
            Some(command) => Work::Exec(Exec {
                command: command.clone(),
                timeout: self.timeout,
            }),
            None => Work::Nap,
        }
    }

    fn max_payload(&self) -> usize {
        usize::try_from(self.max_payload).unwrap_or(usize::MAX)
    }

    fn retry(&self) -> Retry {
        Retry {
            max_attempts: self.max_attempts,
            delay: self.retry_delay.0,
        }
    }

    fn dead_max(&self) -> usize {
        usize::try_from(self.dead_max).unwrap_or(usize::MAX)
    }
}

/// `kitchen enqueue`: dishes with these payloads, tracked.
#[derive(Debug, Args)]
struct EnqueueArgs {
    /// Payloads: any JSON value or text, one dish each; `-` reads one
    /// payload per line from stdin.
    #[arg(value_name = "PAYLOAD", required = true)]
    payloads: Vec<String>,
    /// Wait for each dish's result, print its output, and exit 1 if any failed.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    backend: RedisBackendArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    capacity: CapacityArgs,
    #[command(flatten)]
    reconnect: ReconnectArg,
    #[command(flatten)]
    durable: DurableArg,
    /// The largest payload a dish may carry, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::MAX_PAYLOAD as u64, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    max_payload: u64,
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    backend: RedisBackendArg,
    #[command(flatten)]
    mode: NoModeArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    capacity: CapacityArgs,
    /// Print one JSON object instead of a table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Refresh every second until Ctrl-C: queue depth, retries, dead
    /// letters, rates, and what each live diner holds and has eaten.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Args)]
struct PaceArgs {
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// After each dish, chefs and diners nap a uniform random time below MS; 0 = no naps.
    #[arg(long, value_name = "MS", default_value_t = defaults::MAX_SLEEP_MS, allow_negative_numbers = true, value_parser = parse_ms)]
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
    #[arg(long, value_name = "N", default_value_t = defaults::CHEFS as u32, allow_negative_numbers = true, value_parser = threads())]
    chefs: u32,
}

#[derive(Debug, Args)]
struct DinersArg {
    /// Diner threads.
    #[arg(long, value_name = "N", default_value_t = defaults::DINERS as u32, allow_negative_numbers = true, value_parser = threads())]
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
    backend: BackendArg,
    #[command(flatten)]
    mode: ModeArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    group: GroupArg,
    #[command(flatten)]
    durable: DurableArg,
    #[command(flatten)]
    capacity: CapacityArgs,
    #[command(flatten)]
    batch: BatchArg,
    #[command(flatten)]
    heartbeat: HeartbeatArg,
    #[command(flatten)]
    reconnect: ReconnectArg,
    #[command(flatten)]
    result_ttl: ResultTtlArg,
    #[command(flatten)]
    work: WorkArgs,
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
    backend: RedisBackendArg,
    #[command(flatten)]
    mode: ModeArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    group: GroupArg,
    #[command(flatten)]
    durable: DurableArg,
    #[command(flatten)]
    capacity: CapacityArgs,
    #[command(flatten)]
    batch: BatchArg,
    #[command(flatten)]
    reconnect: ReconnectArg,
    #[command(flatten)]
    pace: PaceArgs,
}

#[derive(Debug, Args)]
struct DinerArgs {
    #[command(flatten)]
    diners: DinersArg,
    #[command(flatten)]
    backend: RedisBackendArg,
    #[command(flatten)]
    mode: ModeArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    group: GroupArg,
    #[command(flatten)]
    batch: BatchArg,
    #[command(flatten)]
    heartbeat: HeartbeatArg,
    #[command(flatten)]
    reconnect: ReconnectArg,
    #[command(flatten)]
    result_ttl: ResultTtlArg,
    #[command(flatten)]
    work: WorkArgs,
    /// Eat until the queue is empty, then exit 0 (for cron and CI).
    #[arg(long)]
    burst: bool,
    #[command(flatten)]
    pace: PaceArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = defaults::BIND, value_parser = parse_bind)]
    bind: String,
    /// Web worker threads: requests answered at once.
    #[arg(long, default_value_t = defaults::WORKERS as u32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// In-process diner threads (local backend; 0 = none, dishes wait).
    #[arg(long, default_value_t = defaults::SERVE_DINERS as u32, value_parser = clap::value_parser!(u32).range(0..=1024))]
    diners: u32,
    /// In-process diners (local backend) nap a uniform random time below MS per dish; 0 = no naps.
    #[arg(long, value_name = "MS", default_value_t = defaults::SERVE_MAX_SLEEP_MS)]
    max_sleep_ms: u64,
    /// The most results kept in memory on the local backend; the oldest go first.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_RESULTS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_results: u64,
    /// Seconds a client gets to send a whole request, or to idle between two.
    #[arg(long, value_name = "SECS", default_value_t = Secs(defaults::CLIENT_TIMEOUT), value_parser = parse_secs_arg)]
    client_timeout: Secs,
    /// How long a request waits for room in a full queue before its 503 (at most 1000).
    #[arg(long, value_name = "MS", default_value_t = defaults::FULL_WAIT_MS, value_parser = clap::value_parser!(u64).range(0..=1000))]
    full_wait_ms: u64,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    mode: ServeModeArg,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    group: GroupArg,
    #[command(flatten)]
    durable: DurableArg,
    #[command(flatten)]
    capacity: CapacityArgs,
    #[command(flatten)]
    result_ttl: ResultTtlArg,
    #[command(flatten)]
    work: WorkArgs,
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
        /// The address to bind, as typed (it resolved when parsed).
        bind: String,
        /// The server.
        config: ServeConfig,
    },
    /// Queue tracked dishes, and maybe wait for their results.
    Enqueue(EnqueueConfig),
    /// List, requeue or purge dead letters.
    Dead {
        /// Where they are.
        redis: RedisOptions,
        /// What to do.
        command: DeadCommand,
    },
    /// Print what is in Redis now.
    Info {
        /// Where to look.
        redis: RedisOptions,
        /// The capacity to show when no chef has recorded one in Redis.
        capacity: Capacity,
        /// JSON instead of a table.
        json: bool,
        /// Refresh every second until stopped (`--watch`).
        watch: bool,
    },
}

impl Cli {
    /// Parses the process's arguments into a validated [`Command`]. The
    /// error is clap's: [`clap::Error::exit`] prints it and exits 2 for a
    /// usage error, 0 for `--help` and `--version`.
    pub fn parse_command() -> Result<Command, clap::Error> {
        Cli::parse_command_from(std::env::args_os())
    }

    /// Parses `args`, the program name first, into a validated [`Command`].
    ///
    /// ```
    /// use kitchen::cli::{Cli, Command};
    ///
    /// let command = Cli::parse_command_from(["kitchen", "chef", "--chefs", "2"]).unwrap();
    /// assert!(matches!(command, Command::Kitchen { .. }));
    /// let err = Cli::parse_command_from(["kitchen", "chef", "--mode", "pubsub", "--capacity", "5"])
    ///     .unwrap_err();
    /// assert_eq!(err.exit_code(), 2);
    /// assert!(err.to_string().contains("Usage: kitchen chef"));
    /// ```
    pub fn parse_command_from<I, T>(args: I) -> Result<Command, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut root = Cli::command();
        // Built, so each subcommand knows its full name for its usage line.
        root.build();
        let matches = match root.try_get_matches_from_mut(&args) {
            Ok(m) => m,
            Err(e) => {
                // Subcommands conflict with the top-level flags, so one is
                // always the first argument.
                let typed = args.get(1).and_then(|a| a.to_str());
                let mut cmd = typed
                    .and_then(|a| root.find_subcommand(a))
                    .cloned()
                    .unwrap_or(root);
                // `kitchen dead purge`: the usage of the nested command.
                if let Some(inner) = args
                    .get(2)
                    .and_then(|a| a.to_str())
                    .and_then(|a| cmd.find_subcommand(a))
                {
                    cmd = inner.clone();
                }
                return Err(with_usage(e, &mut cmd));
            }
        };
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut root))?;
        let (cmd, sub_matches) = match matches.subcommand() {
            Some((name, m)) => (root.find_subcommand(name).cloned(), m),
            None => (None, &matches),
        };
        let mut typed = Typed {
            cmd: cmd.unwrap_or(root),
            matches: sub_matches,
        };
        cli.into_command(&mut typed)
    }

    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        match self.command {
            None => self.run.into_command(t),
            Some(Sub::Run(a)) => a.into_command(t),
            Some(Sub::Chef(a)) => a.into_command(t),
            Some(Sub::Diner(a)) => a.into_command(t),
            Some(Sub::Serve(a)) => a.into_command(t),
            Some(Sub::Info(a)) => a.into_command(t),
            Some(Sub::Enqueue(a)) => a.into_command(t),
            Some(Sub::Dead(a)) => a.into_command(t),
        }
    }
}

/// Adds the typed subcommand's usage line to a clap error that lacks one
/// (clap leaves it off bad values), so `kitchen chef --capacity 0` ends with
/// `Usage: kitchen chef [OPTIONS]`, not the top-level usage.
fn with_usage(mut e: clap::Error, cmd: &mut clap::Command) -> clap::Error {
    if e.use_stderr() && e.get(ContextKind::Usage).is_none() {
        e.insert(
            ContextKind::Usage,
            ContextValue::StyledStr(cmd.render_usage()),
        );
    }
    e
}

/// The subcommand the user typed, and how each of its flags got its value:
/// the second stage refuses only what the user typed, never a default, and
/// reports under that subcommand's usage line.
struct Typed<'a> {
    cmd: clap::Command,
    matches: &'a ArgMatches,
}

impl Typed<'_> {
    /// Whether the user typed flag `id` (clap's id: `heartbeat_ttl`), as
    /// opposed to its default or `REDIS_URL`. False for a flag this
    /// subcommand does not have.
    fn given(&self, id: &str) -> bool {
        // `value_source` panics on an id the subcommand does not define.
        self.matches.ids().any(|i| i.as_str() == id)
            && self.matches.value_source(id) == Some(ValueSource::CommandLine)
    }

    /// A usage error (exit 2) under this subcommand's usage line.
    fn error(&mut self, kind: ErrorKind, msg: String) -> clap::Error {
        self.cmd.error(kind, msg)
    }

    /// Refuses each flag of `rules` the user typed, when `ignored` says the
    /// command would not read it; each rule is (clap id, why).
    /// Refuses the flags `mode` does not read (the chef's and the diner's
    /// shared rules; each adds its own).
    fn refuse_by_mode(&mut self, mode: Mode) -> Result<(), clap::Error> {
        self.refuse(mode == Mode::Pubsub, &PUBSUB_IGNORES)?;
        self.refuse(mode == Mode::List, &LIST_IGNORES)?;
        self.refuse(mode == Mode::Stream, &STREAM_IGNORES)?;
        self.refuse(mode != Mode::Stream, &STREAM_ONLY)
    }

    fn refuse(&mut self, ignored: bool, rules: &[(&str, &str)]) -> Result<(), clap::Error> {
        if !ignored {
            return Ok(());
        }
        match rules.iter().find(|(id, _)| self.given(id)) {
            Some((_, why)) => Err(self.error(ErrorKind::ArgumentConflict, (*why).to_owned())),
            None => Ok(()),
        }
    }

    /// Refuses `--backend local` for a role that exists only on Redis.
    fn redis_only(&mut self, backend: BackendKind, why: &str) -> Result<(), clap::Error> {
        if backend == BackendKind::Local {
            return Err(self.error(ErrorKind::ArgumentConflict, why.to_owned()));
        }
        Ok(())
    }
}

/// Flags that mean something only with `--backend redis`, and why.
const REDIS_ONLY: [(&str, &str); 15] = [
    (
        "cluster",
        "--cluster applies to --backend redis; the local queue lives inside this process",
    ),
    (
        "shards",
        "--shards spreads a Redis list: add --backend redis, or drop it for the local queue",
    ),
    (
        "durable",
        "--durable waits for a Redis replica: add --backend redis, or drop it for the local queue",
    ),
    (
        "mode",
        "--mode applies to --backend redis; the local backend is a queue",
    ),
    (
        "redis_url",
        "--redis-url applies to --backend redis; the local queue lives inside this process",
    ),
    (
        "queue",
        "--queue names a Redis list: add --backend redis, or drop it for the local queue",
    ),
    (
        "channel",
        "--channel names a Redis channel: add --backend redis, or drop it for the local queue",
    ),
    (
        "stream",
        "--stream names a Redis stream: add --backend redis --mode stream, or drop it for the local queue",
    ),
    (
        "group",
        "--group names a consumer group of a Redis stream: add --backend redis --mode stream, or drop it for the local queue",
    ),
    (
        "batch",
        "--batch applies to --backend redis, where it saves round trips; the local queue has none to save",
    ),
    (
        "heartbeat_ttl",
        "--heartbeat-ttl applies to --backend redis, where a diner in another process can die holding dishes",
    ),
    (
        "reconnect_timeout",
        "--reconnect-timeout applies to --backend redis; the local queue has no server to lose",
    ),
    (
        "tls_ca",
        "--tls-ca applies to --backend redis with a rediss:// URL; the local queue has no server",
    ),
    (
        "tls_cert",
        "--tls-cert applies to --backend redis with a rediss:// URL; the local queue has no server",
    ),
    (
        "tls_key",
        "--tls-key applies to --backend redis with a rediss:// URL; the local queue has no server",
    ),
];

/// What `--mode pubsub` ignores wherever it appears, and why.
const PUBSUB_IGNORES: [(&str, &str); 4] = [
    (
        "durable",
        "--durable does not apply to --mode pubsub: a channel keeps no dish for a replica to copy; drop it, or use --mode list",
    ),
    (
        "capacity",
        "--capacity does not apply to --mode pubsub: a channel holds no dishes, so there is nothing to bound; drop it, or use --mode list",
    ),
    (
        "unbounded",
        "--unbounded does not apply to --mode pubsub: a channel holds no dishes, so there is nothing to bound; drop it, or use --mode list",
    ),
    (
        "heartbeat_ttl",
        "--heartbeat-ttl does not apply to --mode pubsub: a subscriber holds no dishes that could go back on a queue; drop it, or use --mode list",
    ),
];

/// What only `--mode stream` reads, wherever another mode is chosen, and why.
const STREAM_ONLY: [(&str, &str); 2] = [
    (
        "stream",
        "--stream names the stream of --mode stream: add --mode stream, or drop it",
    ),
    (
        "group",
        "--group names a consumer group of --mode stream: add --mode stream, or drop it",
    ),
];

/// What `--mode stream` ignores in the roles that use one mode, and why.
const STREAM_IGNORES: [(&str, &str); 1] = [(
    "channel",
    "--channel does not apply to --mode stream, which carries dishes on --stream; add --mode pubsub, or drop it",
)];

/// What `--mode list` ignores in the roles that use one mode, and why.
const LIST_IGNORES: [(&str, &str); 1] = [(
    "channel",
    "--channel does not apply to --mode list, which carries dishes on --queue; add --mode pubsub, or drop it",
)];

impl RunArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        let (backend, mode) = (self.backend.backend, self.mode.mode);
        let local = backend == BackendKind::Local;
        t.refuse(local, &REDIS_ONLY)?;
        t.refuse(
            local,
            &[
                (
                    "result_ttl",
                    "--result-ttl applies to --backend redis, where diners record results for `kitchen serve`; a local run keeps none",
                ),
                (
                    "max_payload",
                    "--max-payload applies to --backend redis, where payloads come from other producers; a local run makes its own",
                ),
                (
                    "dead_max",
                    "--dead-max applies to --backend redis; a local run keeps its dead letters in memory",
                ),
            ],
        )?;
        t.refuse(!local && mode == Mode::Pubsub, &PUBSUB_IGNORES)?;
        t.refuse(!local && mode == Mode::List, &LIST_IGNORES)?;
        t.refuse(!local && mode == Mode::Stream, &STREAM_IGNORES)?;
        t.refuse(!local && mode != Mode::Stream, &STREAM_ONLY)?;
        let backend = backend_config(t, backend, mode, self.redis, |o| {
            o.durable = self.durable.durable;
            o.group = self.group.group;
            o.batch = self.batch.batch as usize;
            o.heartbeat_ttl = self.heartbeat.heartbeat_ttl.0;
            o.reconnect_for = self.reconnect.reconnect_timeout.0;
            o.result_ttl = self.result_ttl.result_ttl.0;
            o.max_payload = self.work.max_payload();
            o.dead_max = self.work.dead_max();
        })?;
        let capacity = self.capacity.capacity(t, local)?;
        if let BackendConfig::Redis(o) = &backend {
            check_shards(t, o, capacity)?;
        }
        Ok(kitchen_command(
            KitchenConfig {
                role: Role::Run,
                backend,
                capacity,
                chefs: self.chefs.chefs as usize,
                diners: self.diners.diners as usize,
                dishes: self.dishes.dishes,
                work: self.work.work(),
                shutdown_timeout: self.work.shutdown_timeout.0,
                retry: self.work.retry(),
                ..KitchenConfig::default()
            },
            self.pace,
        ))
    }
}

impl ChefArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        let mode = self.mode.mode;
        t.redis_only(
            self.backend.backend,
            "`kitchen chef` needs --backend redis (its default): a local queue lives inside one process, so use `kitchen run` for it",
        )?;
        t.refuse_by_mode(mode)?;
        t.refuse(
            mode == Mode::Pubsub,
            &[(
                "queue",
                "--queue does not apply to `kitchen chef --mode pubsub`, whose chefs publish on --channel; drop it, or use --mode list",
            )],
        )?;
        t.refuse(
            mode == Mode::Stream,
            &[(
                "queue",
                "--queue does not apply to `kitchen chef --mode stream`, whose chefs add to --stream; drop it, or use --mode list",
            )],
        )?;
        let redis = redis_options(t, mode, self.redis, |o| {
            o.durable = self.durable.durable;
            o.group = self.group.group;
            o.batch = self.batch.batch as usize;
            o.reconnect_for = self.reconnect.reconnect_timeout.0;
        })?;
        let capacity = self.capacity.capacity(t, false)?;
        check_shards(t, &redis, capacity)?;
        Ok(kitchen_command(
            KitchenConfig {
                role: Role::Chef,
                backend: BackendConfig::Redis(redis),
                capacity,
                chefs: self.chefs.chefs as usize,
                diners: 0,
                dishes: self.dishes.dishes,
                ..KitchenConfig::default()
            },
            self.pace,
        ))
    }
}

impl DinerArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        let mode = self.mode.mode;
        t.redis_only(
            self.backend.backend,
            "`kitchen diner` needs --backend redis (its default): a local queue lives inside one process, so use `kitchen run` for it",
        )?;
        t.refuse_by_mode(mode)?;
        t.refuse(
            mode == Mode::Pubsub,
            &[(
                "batch",
                "--batch does not apply to `kitchen diner --mode pubsub`: a subscriber receives each dish as it is published; drop it, or use --mode list",
            )],
        )?;
        let redis = redis_options(t, mode, self.redis, |o| {
            o.group = self.group.group;
            o.batch = self.batch.batch as usize;
            o.heartbeat_ttl = self.heartbeat.heartbeat_ttl.0;
            o.reconnect_for = self.reconnect.reconnect_timeout.0;
            o.result_ttl = self.result_ttl.result_ttl.0;
            o.max_payload = self.work.max_payload();
            o.dead_max = self.work.dead_max();
        })?;
        Ok(kitchen_command(
            KitchenConfig {
                role: Role::Diner,
                work: self.work.work(),
                shutdown_timeout: self.work.shutdown_timeout.0,
                retry: self.work.retry(),
                burst: self.burst,
                backend: BackendConfig::Redis(redis),
                // Diners never read the bound: chefs keep it.
                chefs: 0,
                diners: self.diners.diners as usize,
                dishes: None,
                ..KitchenConfig::default()
            },
            self.pace,
        ))
    }
}

impl ServeArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        let local = self.backend.backend == BackendKind::Local;
        t.refuse(local, &REDIS_ONLY)?;
        if self.mode.mode == Some(Mode::Pubsub) {
            return Err(t.error(
                ErrorKind::ArgumentConflict,
                "`kitchen serve` takes no --mode pubsub: /pubsub always publishes on --channel, and /prodcons needs somewhere dishes wait; use --mode list (the default) or --mode stream"
                    .into(),
            ));
        }
        let mode = self.mode.mode.unwrap_or(Mode::List);
        t.refuse(!local && mode != Mode::Stream, &STREAM_ONLY)?;
        t.refuse(
            !local,
            &[
                (
                    "diners",
                    "--diners applies to `kitchen serve --backend local`: with redis, diners are `kitchen diner` processes",
                ),
                (
                    "max_sleep_ms",
                    "--max-sleep-ms applies to `kitchen serve --backend local`, whose diners run inside it: with redis, give it to `kitchen diner`",
                ),
                (
                    "max_results",
                    "--max-results applies to `kitchen serve --backend local`, which keeps results in memory: with redis they live in Redis for --result-ttl",
                ),
            ],
        )?;
        t.refuse(
            local,
            &[(
                "dead_max",
                "--dead-max applies to --backend redis; the local queue keeps its dead letters in memory",
            )],
        )?;
        let result_ttl = self.result_ttl.result_ttl.0;
        // /pubsub publishes whatever the mode; the server fails fast instead
        // of reconnecting.
        let group = self.group.group;
        let max_payload = self.work.max_payload();
        let dead_max = self.work.dead_max();
        let durable = self.durable.durable;
        let backend = backend_config(t, self.backend.backend, mode, self.redis, |o| {
            o.durable = durable;
            o.result_ttl = result_ttl;
            o.group = group;
            o.max_payload = max_payload;
            o.dead_max = dead_max;
        })?;
        let capacity = self.capacity.capacity(t, local)?;
        if let BackendConfig::Redis(o) = &backend {
            check_shards(t, o, capacity)?;
        }
        Ok(Command::Serve {
            bind: self.bind,
            config: ServeConfig {
                backend,
                capacity,
                diners: self.diners as usize,
                workers: self.workers as usize,
                max_sleep: Duration::from_millis(self.max_sleep_ms),
                result_ttl,
                max_results: usize::try_from(self.max_results).unwrap_or(usize::MAX),
                client_timeout: self.client_timeout.0,
                full_wait: Duration::from_millis(self.full_wait_ms),
                max_payload,
                work: self.work.work(),
                shutdown_timeout: self.work.shutdown_timeout.0,
                retry: self.work.retry(),
            },
        })
    }
}

impl InfoArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        t.redis_only(
            self.backend.backend,
            "`kitchen info` needs --backend redis (its default): a local queue lives and dies inside one `kitchen run`",
        )?;
        if self.mode.mode.is_some() {
            return Err(t.error(
                ErrorKind::ArgumentConflict,
                "`kitchen info` takes no --mode: it shows the list, the channel and the stream"
                    .into(),
            ));
        }
        let redis = redis_options(t, Mode::List, self.redis, |_| {})?;
        Ok(Command::Info {
            redis,
            capacity: self.capacity.capacity(t, false)?,
            json: self.json,
            watch: self.watch,
        })
    }
}

impl DeadArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        let Some((name, matches)) = t.matches.subcommand() else {
            return Err(t.error(ErrorKind::MissingSubcommand, "name a command".into()));
        };
        // The flags are the nested command's: refuse and report under it.
        let cmd = t
            .cmd
            .find_subcommand(name)
            .cloned()
            .unwrap_or_else(|| t.cmd.clone());
        let mut t = Typed { cmd, matches };
        let (place, command) = match self.action {
            DeadAction::List(a) => (
                a.place,
                DeadCommand::List {
                    json: a.json,
                    limit: a.limit,
                },
            ),
            DeadAction::Requeue(a) => (a.place, DeadCommand::Requeue(which(a.all, a.ids))),
            DeadAction::Purge(a) => (a.place, DeadCommand::Purge(which(a.all, a.ids))),
        };
        t.redis_only(
            place.backend.backend,
            "`kitchen dead` needs --backend redis (its default): a local queue's dead letters live and die inside one `kitchen run` (the page of `kitchen serve` shows them)",
        )?;
        let mode = place.mode;
        if mode == Mode::Pubsub {
            return Err(t.error(
                ErrorKind::ArgumentConflict,
                "`kitchen dead` takes --mode list or stream: a channel keeps no dishes, and payloads its diners could not read are kept with the list's (--queue)".into(),
            ));
        }
        t.refuse(
            true,
            &[(
                "channel",
                "--channel does not apply to `kitchen dead`: dead letters are kept beside --queue or --stream; drop it",
            )],
        )?;
        t.refuse(
            mode == Mode::List,
            &[(
                "stream",
                "--stream names the stream of --mode stream: add --mode stream, or drop it",
            )],
        )?;
        t.refuse(
            mode == Mode::Stream,
            &[(
                "queue",
                "--queue does not apply to `kitchen dead --mode stream`, whose dead letters are kept beside --stream; drop it, or use --mode list",
            )],
        )?;
        let redis = redis_options(&mut t, mode, place.redis, |_| {})?;
        Ok(Command::Dead { redis, command })
    }
}

/// All, or the ids named (clap makes sure there is one or the other).
fn which(all: bool, ids: Vec<String>) -> Which {
    if all { Which::All } else { Which::Ids(ids) }
}

impl EnqueueArgs {
    fn into_command(self, t: &mut Typed<'_>) -> Result<Command, clap::Error> {
        t.redis_only(
            self.backend.backend,
            "`kitchen enqueue` needs --backend redis (its default): a local queue lives inside one process; use `POST /dishes` on `kitchen serve` for it",
        )?;
        let max_payload = usize::try_from(self.max_payload).unwrap_or(usize::MAX);
        let redis = redis_options(t, Mode::List, self.redis, |o| {
            o.durable = self.durable.durable;
            o.reconnect_for = self.reconnect.reconnect_timeout.0;
            o.max_payload = max_payload;
        })?;
        let capacity = self.capacity.capacity(t, false)?;
        check_shards(t, &redis, capacity)?;
        Ok(Command::Enqueue(EnqueueConfig {
            backend: BackendConfig::Redis(redis),
            capacity,
            payloads: self.payloads,
            wait: self.wait,
            max_payload,
        }))
    }
}

/// The run's config with the pace flags filled in, and where its summary goes.
fn kitchen_command(config: KitchenConfig, pace: PaceArgs) -> Command {
    Command::Kitchen {
        config: KitchenConfig {
            duration: pace.duration,
            max_sleep: Duration::from_millis(pace.max_sleep_ms),
            seed: pace.seed,
            quiet: pace.quiet,
            ids: pace.ids,
            ..config
        },
        json: pace.json,
    }
}

/// The backend the flags name; see [`redis_options`].
fn backend_config(
    t: &mut Typed<'_>,
    backend: BackendKind,
    mode: Mode,
    redis: RedisArgs,
    set: impl FnOnce(&mut RedisOptions),
) -> Result<BackendConfig, clap::Error> {
    Ok(match backend {
        BackendKind::Local => BackendConfig::Local,
        BackendKind::Redis => BackendConfig::Redis(redis_options(t, mode, redis, set)?),
    })
}

/// The Redis options the flags name, the URL checked; `set` fills in the
/// flags this subcommand takes, the others keep [`RedisOptions::new`]'s
/// defaults.
fn redis_options(
    t: &mut Typed<'_>,
    mode: Mode,
    redis: RedisArgs,
    set: impl FnOnce(&mut RedisOptions),
) -> Result<RedisOptions, clap::Error> {
    check_redis_url(&redis.redis_url).map_err(|e| {
        t.error(
            ErrorKind::ValueValidation,
            format!("invalid --redis-url: {e}"),
        )
    })?;
    if redis.cluster {
        check_cluster_url(t, &redis)?;
    }
    if redis.shards > 1 && mode != Mode::List {
        return Err(t.error(
            ErrorKind::ArgumentConflict,
            format!(
                "--shards spreads a list over hash slots: it needs --mode list (a {} is one key); drop --shards",
                if mode == Mode::Stream { "stream" } else { "channel" }
            ),
        ));
    }
    let tls = TlsFiles {
        ca: redis.tls_ca,
        client: redis.tls_cert.zip(redis.tls_key),
    };
    if tls.any() && !crate::redis_url::is_tls(&redis.redis_url) {
        let flag = if tls.ca.is_some() {
            "--tls-ca"
        } else {
            "--tls-cert"
        };
        return Err(t.error(
            ErrorKind::ArgumentConflict,
            format!(
                "{flag} applies to a rediss:// URL (TLS), and --redis-url is `{}`: use rediss://, or drop the --tls-* flags",
                crate::redis_url::redact(&redis.redis_url)
            ),
        ));
    }
    let mut o = RedisOptions::new(redis.redis_url, mode);
    o.tls = tls;
    o.queue = redis.queue;
    o.channel = redis.channel;
    o.stream = redis.stream;
    o.cluster = redis.cluster;
    o.shards = redis.shards;
    set(&mut o);
    Ok(o)
}

/// Refuses a bound smaller than the shards: each shard holds at least one
/// dish, so the whole would exceed `--capacity`.
fn check_shards(
    t: &mut Typed<'_>,
    o: &RedisOptions,
    capacity: Capacity,
) -> Result<(), clap::Error> {
    match capacity.limit() {
        Some(c) if c < o.shards => Err(t.error(
            ErrorKind::ArgumentConflict,
            format!(
                "--capacity {c} is below --shards {}: each shard holds at least one dish; raise --capacity or lower --shards",
                o.shards
            ),
        )),
        _ => Ok(()),
    }
}

/// Refuses what a cluster cannot be reached by: a socket path (the cluster
/// hands out TCP addresses of its nodes), a database other than 0 (the
/// only one a cluster has), named on the command line or by `REDIS_URL`;
/// the default URL's `/5` is ignored. Also a queue name whose helper keys
/// cannot share its hash slot.
fn check_cluster_url(t: &mut Typed<'_>, redis: &RedisArgs) -> Result<(), clap::Error> {
    let url = &redis.redis_url;
    if url.starts_with("redis+unix:") || url.starts_with("unix:") {
        return Err(t.error(
            ErrorKind::ValueValidation,
            "--cluster needs a redis://host:port URL of any node: a cluster hands out the TCP addresses of its nodes, not socket paths".to_owned(),
        ));
    }
    let defaulted = t.matches.value_source("redis_url") == Some(ValueSource::DefaultValue);
    let db = crate::redis_url::database(url).unwrap_or(0);
    if db != 0 && !defaulted {
        return Err(t.error(
            ErrorKind::ValueValidation,
            format!(
                "--cluster: `{}` names database {db}, but a Redis Cluster has only database 0: drop `/{db}` from the URL",
                crate::redis_url::redact(url)
            ),
        ));
    }
    for name in [&redis.queue, &redis.stream] {
        if let Some(why) = crate::queue::slot_problem(name) {
            return Err(t.error(ErrorKind::ValueValidation, why));
        }
    }
    Ok(())
}

impl CapacityArgs {
    /// The bound; `local` if it is for the in-process queue, which has a limit.
    fn capacity(&self, t: &mut Typed<'_>, local: bool) -> Result<Capacity, clap::Error> {
        if local && self.capacity > MAX_LOCAL_CAPACITY {
            return Err(t.error(
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
}

/// The most chef or diner threads one process starts.
pub const MAX_THREADS: u32 = 4096;

/// The largest in-process queue: crossbeam allocates every slot up front.
pub const MAX_LOCAL_CAPACITY: u32 = 1_000_000;

fn threads() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS))
}

/// A number of seconds, fractions allowed: what `--heartbeat-ttl` and the
/// like hold, shown in `--help` as typed (`5`, `0.5`), so that clap's
/// `[default: …]` comes from [`crate::defaults`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
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

fn parse_attempts(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a number of attempts: use a whole number from 1 up (1: no retries)"
        )),
    }
}

/// A wait of 0 seconds or more (0: try again at once).
fn parse_delay(s: &str) -> Result<Secs, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds; try 1 or 0.5"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` must be 0 seconds or more"));
    }
    let max = crate::vocab::MAX_RETRY_WAIT.as_secs();
    if secs > max as f64 {
        return Err(format!(
            "`{s}` seconds is over a day: a retry waits at most {max} s"
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map(Secs)
        .map_err(|_| format!("`{s}` seconds is too long"))
}

fn parse_secs_arg(s: &str) -> Result<Secs, String> {
    parse_secs(s).map(Secs)
}

/// Checks `--bind` by resolving it as `TcpListener::bind` will, so that an
/// address that cannot be is a usage error; keeps the text as typed for the
/// "listening on" line.
fn parse_bind(s: &str) -> Result<String, String> {
    let hint = format!(
        "use HOST:PORT, such as {}, or port 0 for a free one",
        defaults::BIND
    );
    match s.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(s.to_owned()),
        Ok(None) => Err(format!("it resolves to no address: {hint}")),
        Err(e) => Err(format!("not an address to listen on ({e}): {hint}")),
    }
}

/// Checks `--redis-url`. Done after parsing, not as a clap value parser,
/// because clap's message would echo the URL, password included; ours shows
/// it redacted.
fn check_redis_url(s: &str) -> Result<(), String> {
    crate::redis_url::validate(s)?;
    // What the backend itself refuses (TLS in this build, `?protocol=`).
    crate::queue::check_redis_url(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::parse_command_from(std::iter::once("kitchen").chain(args.iter().copied()))
    }

    fn config(args: &[&str]) -> KitchenConfig {
        match parse(args) {
            Ok(Command::Kitchen { config, .. }) => config,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn redis(args: &[&str]) -> RedisOptions {
        match parse(args) {
            Ok(Command::Kitchen {
                config:
                    KitchenConfig {
                        backend: BackendConfig::Redis(o),
                        ..
                    },
                ..
            }) => o,
            Ok(Command::Info { redis, .. }) => redis,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    /// The usage error `line` (a subcommand and its flags, split at spaces)
    /// must give: exit 2, saying `hint`, under that subcommand's usage line.
    fn refused(line: &str, hint: &str) {
        let args: Vec<&str> = line.split(' ').collect();
        let err = parse(&args).expect_err(&format!("`{line}` should be refused"));
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2, "{line}: {text}");
        assert!(text.contains(hint), "{line}: expected {hint:?} in {text}");
        let usage = format!("Usage: kitchen {} ", args[0]);
        assert!(
            text.contains(&usage),
            "{line}: expected {usage:?} in {text}"
        );
    }

    /// `line` parses.
    fn accepted(line: &str) {
        let args: Vec<&str> = line.split(' ').collect();
        parse(&args).unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    #[test]
    fn bare_kitchen_is_the_tutorial() {
        assert_eq!(config(&[]), KitchenConfig::default());
        assert_eq!(config(&["run"]), KitchenConfig::default());
    }

    #[test]
    fn every_default_is_read_from_defaults() {
        let c = config(&[]);
        assert_eq!(c.capacity, Capacity::Bounded(defaults::CAPACITY));
        assert_eq!((c.chefs, c.diners), (defaults::CHEFS, defaults::DINERS));
        assert_eq!(c.max_sleep, defaults::MAX_SLEEP);
        let o = redis(&["run", "--backend", "redis"]);
        assert_eq!(o.url, defaults::REDIS_URL);
        assert_eq!(
            (o.queue.as_str(), o.channel.as_str()),
            (defaults::QUEUE, defaults::CHANNEL)
        );
        assert_eq!((o.mode, o.batch), (Mode::List, defaults::BATCH));
        assert_eq!(o.heartbeat_ttl, defaults::HEARTBEAT_TTL);
        assert_eq!(o.reconnect_for, defaults::RECONNECT_FOR);
        assert_eq!(o.result_ttl, defaults::RESULT_TTL);
        let (bind, c) = serve(&["serve"]);
        assert_eq!(bind, defaults::BIND);
        assert_eq!(
            (c.workers, c.diners),
            (defaults::WORKERS, defaults::SERVE_DINERS)
        );
        assert_eq!(
            c.max_sleep,
            Duration::from_millis(defaults::SERVE_MAX_SLEEP_MS)
        );
        assert_eq!(c.max_results, defaults::MAX_RESULTS);
        assert_eq!(c.client_timeout, defaults::CLIENT_TIMEOUT);
        assert_eq!(c.full_wait, defaults::FULL_WAIT);
        assert_eq!(c.result_ttl, defaults::RESULT_TTL);
        // What --help shows is what parsing gives.
        let mut cli = Cli::command();
        cli.build();
        let shown = |sub: &str, id: &str| -> String {
            let cmd = cli.find_subcommand(sub).expect(sub);
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).expect(id);
            arg.get_default_values()[0].to_string_lossy().into_owned()
        };
        assert_eq!(
            shown("diner", "heartbeat_ttl"),
            defaults::HEARTBEAT_TTL_SECS.to_string()
        );
        assert_eq!(
            shown("chef", "reconnect_timeout"),
            defaults::RECONNECT_SECS.to_string()
        );
        assert_eq!(
            shown("serve", "result_ttl"),
            defaults::RESULT_TTL_SECS.to_string()
        );
        assert_eq!(
            shown("serve", "client_timeout"),
            defaults::CLIENT_TIMEOUT_SECS.to_string()
        );
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
        let o = redis(&[
            "diner",
            "--batch",
            "4",
            "--heartbeat-ttl",
            "0.5",
            "--reconnect-timeout",
            "2",
            "--result-ttl",
            "60",
        ]);
        assert_eq!(o.batch, 4);
        assert_eq!(o.heartbeat_ttl, Duration::from_millis(500));
        assert_eq!(o.reconnect_for, Duration::from_secs(2));
        assert_eq!(o.result_ttl, Duration::from_secs(60));
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
            &["chef", "--backend", "local"],
            &["diner", "--backend", "local"],
            &["info", "--backend", "local"],
            &["--redis-url", "http://x", "--backend", "redis"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn redis_only_roles_imply_redis() {
        for (args, role) in [
            (&["chef"][..], Role::Chef),
            (&["diner"], Role::Diner),
            (&["chef", "--backend", "redis"], Role::Chef),
            (&["diner", "--backend", "redis"], Role::Diner),
        ] {
            let c = config(args);
            assert_eq!(c.role, role, "{args:?}");
            assert!(matches!(c.backend, BackendConfig::Redis(_)), "{args:?}");
        }
        assert_eq!(redis(&["info"]).url, defaults::REDIS_URL);
        assert_eq!(
            redis(&["info", "--backend", "redis"]).url,
            defaults::REDIS_URL
        );
        refused("chef --backend local", "needs --backend redis");
        refused("diner --backend local", "use `kitchen run`");
        refused("info --backend local", "lives and dies inside");
    }

    #[test]
    fn flags_that_would_be_ignored_are_refused() {
        refused(
            "serve --backend redis --batch 3",
            "unexpected argument '--batch'",
        );
        refused(
            "serve --backend redis --diners 3",
            "`kitchen diner` processes",
        );
        refused(
            "serve --backend redis --max-sleep-ms 3",
            "--max-sleep-ms applies",
        );
        refused(
            "serve --backend redis --max-results 3",
            "--max-results applies",
        );
        refused("serve --queue q", "--queue names a Redis list");
        refused("serve --redis-url redis://h/1", "--redis-url applies");
        refused(
            "serve --backend redis --mode pubsub",
            "takes no --mode pubsub",
        );
        refused("serve --mode stream", "--mode applies to --backend redis");
        refused("serve --backend redis --stream s", "add --mode stream");
        refused("serve --backend redis --group g", "add --mode stream");
        refused("serve --heartbeat-ttl 3", "unexpected argument");
        refused("serve --reconnect-timeout 3", "unexpected argument");
        refused("diner --capacity 3", "unexpected argument '--capacity'");
        refused("diner --unbounded", "unexpected argument");
        refused("diner --dishes 3", "unexpected argument");
        refused("diner --mode pubsub --batch 3", "a subscriber receives");
        refused(
            "diner --mode pubsub --heartbeat-ttl 3",
            "--heartbeat-ttl does not apply",
        );
        refused(
            "diner --channel c",
            "--channel does not apply to --mode list",
        );
        refused("info --batch 5", "unexpected argument '--batch'");
        refused("info --mode pubsub", "takes no --mode");
        refused("info --mode stream", "takes no --mode");
        refused("info --group g", "unexpected argument '--group'");
        refused("run --stream s", "add --backend redis --mode stream");
        refused("run --group g", "add --backend redis --mode stream");
        refused("run --backend redis --group g", "add --mode stream");
        refused("diner --mode pubsub --stream s", "add --mode stream");
        refused("chef --group g", "add --mode stream");
        refused(
            "diner --mode stream --channel c",
            "carries dishes on --stream",
        );
        refused(
            "chef --mode stream --queue q",
            "whose chefs add to --stream",
        );
        refused(
            "run --backend redis --mode stream --channel c",
            "--channel does not apply",
        );
        refused("info --heartbeat-ttl 5", "unexpected argument");
        refused("info --result-ttl 5", "unexpected argument");
        refused("chef --diners 2", "unexpected argument");
        refused("chef --heartbeat-ttl 2", "unexpected argument");
        refused("chef --result-ttl 2", "unexpected argument");
        refused(
            "chef --mode pubsub --capacity 5",
            "--capacity does not apply to --mode pubsub",
        );
        refused(
            "chef --mode pubsub --unbounded",
            "--unbounded does not apply",
        );
        refused("chef --mode pubsub --queue q", "publish on --channel");
        refused("chef --channel c", "add --mode pubsub");
        refused(
            "run --backend redis --mode pubsub --capacity 5",
            "nothing to bound",
        );
        refused(
            "run --backend redis --mode pubsub --unbounded",
            "nothing to bound",
        );
        refused(
            "run --backend redis --mode pubsub --heartbeat-ttl 2",
            "a subscriber holds no",
        );
        refused(
            "run --backend redis --channel c",
            "--channel does not apply",
        );
        refused("run --queue q", "add --backend redis");
        refused(
            "run --heartbeat-ttl 2",
            "--heartbeat-ttl applies to --backend redis",
        );
        refused("run --reconnect-timeout 2", "no server to lose");
        refused("run --result-ttl 2", "a local run keeps none");
        refused("run --redis-url redis://h/1", "--redis-url applies");
        // The same flags where they are read.
        accepted("serve --backend redis --capacity 3 --result-ttl 9");
        accepted("serve --diners 3 --max-sleep-ms 3 --max-results 3");
        accepted("diner --mode pubsub --channel c --queue q --result-ttl 9");
        accepted("diner --batch 3 --heartbeat-ttl 3 --reconnect-timeout 3");
        accepted("chef --mode pubsub --batch 3 --channel c");
        accepted("chef --capacity 3 --queue q --reconnect-timeout 3");
        accepted("info --capacity 3 --queue q --channel c --json");
        accepted("run --backend redis --mode pubsub --batch 3 --queue q");
        accepted("run --backend redis --unbounded --heartbeat-ttl 2");
        accepted("run --backend redis --mode stream --stream s --group g --batch 3 --queue q");
        accepted("chef --mode stream --stream s --group g --unbounded --batch 8");
        accepted("diner --mode stream --group g --heartbeat-ttl 2 --batch 4 --queue q");
        accepted("serve --backend redis --mode stream --stream s --group g --channel c");
        accepted("serve --backend redis --mode list --queue q");
        accepted("info --stream s --queue q");
    }

    #[test]
    fn the_environment_is_not_a_flag_the_user_typed() {
        // REDIS_URL set for other tools does not make a local run fail.
        let mut root = Cli::command();
        root.build();
        let m = root
            .clone()
            .try_get_matches_from(["kitchen", "run"])
            .expect("parses");
        let (_, sub) = m.subcommand().expect("run");
        let t = Typed {
            cmd: root,
            matches: sub,
        };
        assert!(!t.given("redis_url") && !t.given("capacity"));
        assert!(!t.given("no_such_flag"));
    }

    /// Each subcommand's `--help` lists exactly the flags it reads.
    #[test]
    fn each_subcommand_takes_only_the_flags_it_reads() {
        let redis = "redis-url queue channel stream tls-ca tls-cert tls-key cluster shards";
        let pace = "duration max-sleep-ms seed quiet json ids";
        let work = "exec timeout shutdown-timeout max-payload max-attempts retry-delay dead-max";
        let matrix = [
            ("run", work.to_owned()),
            ("diner", format!("{work} burst")),
            ("serve", work.to_owned()),
            (
                "enqueue",
                format!("wait capacity unbounded reconnect-timeout max-payload durable {redis}"),
            ),
            (
                "run",
                format!(
                    "chefs diners dishes backend mode group capacity unbounded batch durable {redis}"
                ),
            ),
            (
                "run",
                format!("heartbeat-ttl reconnect-timeout result-ttl {pace}"),
            ),
            (
                "chef",
                format!("chefs dishes mode group capacity unbounded batch durable {redis}"),
            ),
            ("chef", format!("reconnect-timeout {pace}")),
            (
                "diner",
                format!("diners mode group batch heartbeat-ttl reconnect-timeout {redis}"),
            ),
            ("diner", format!("result-ttl {pace}")),
            (
                "serve",
                format!("bind workers diners max-sleep-ms max-results mode group durable {redis}"),
            ),
            (
                "serve",
                "client-timeout full-wait-ms backend capacity unbounded result-ttl".into(),
            ),
            ("info", format!("capacity unbounded json watch {redis}")),
        ];
        let mut root = Cli::command();
        root.build();
        for sub in ["run", "chef", "diner", "serve", "info", "enqueue"] {
            let mut want: Vec<&str> = matrix
                .iter()
                .filter(|(s, _)| *s == sub)
                .flat_map(|(_, flags)| flags.split(' '))
                .collect();
            let cmd = root.find_subcommand(sub).expect(sub);
            let mut shown: Vec<&str> = cmd
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| a.get_long())
                .filter(|l| !["help", "version"].contains(l))
                .collect();
            shown.sort_unstable();
            want.sort_unstable();
            assert_eq!(shown, want, "kitchen {sub} --help");
        }
    }

    #[test]
    fn tls_files_go_with_a_rediss_url() {
        let o = redis(&[
            "chef",
            "--redis-url",
            "rediss://h:6380/0",
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "c.key",
        ]);
        assert_eq!(o.tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            o.tls.client,
            Some((PathBuf::from("c.pem"), PathBuf::from("c.key")))
        );
        let o = redis(&["info", "--redis-url", "rediss://h/0", "--tls-ca", "ca.pem"]);
        assert_eq!((o.tls.ca.is_some(), o.tls.client), (true, None));
        assert!(!redis(&["chef", "--redis-url", "rediss://h/0"]).tls.any());
        refused(
            "chef --redis-url rediss://h/0 --tls-cert c.pem",
            "--tls-key",
        );
        refused(
            "diner --redis-url rediss://h/0 --tls-key c.key",
            "--tls-cert",
        );
        refused(
            "enqueue --redis-url redis://h/0 --tls-ca ca.pem x",
            "rediss://",
        );
        refused(
            "serve --tls-ca ca.pem",
            "--tls-ca applies to --backend redis",
        );
        refused("chef --redis-url rediss://h/0#insecure", "#insecure");
    }

    #[test]
    fn usage_errors_show_the_usage_of_the_subcommand_typed() {
        refused("chef --capacity 0", "0 is not in 1..");
        refused("diner --diners x", "invalid digit");
        refused("serve --workers 0", "0 is not in 1..=1024");
        refused("info --capacity -1", "-1 is not in 1..");
        refused("run --duration soon", "not a number of seconds");
        refused("chef --redis-url http://x", "invalid --redis-url");
        refused("run --capacity 2000000", "at most 1000000");
        // Bare `kitchen` keeps the top-level usage.
        let text = parse(&["--capacity", "0"])
            .expect_err("refused")
            .to_string();
        assert!(text.contains("Usage: kitchen [OPTIONS]"), "{text}");
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
            &["serve", "--mode", "pubsub", "--backend", "redis"],
            &["serve", "--result-ttl", "0"],
        ] {
            assert_eq!(parse(bad).map(|_| ()).expect_err("refused").exit_code(), 2);
        }
    }

    #[test]
    fn a_bind_address_that_does_not_resolve_is_a_usage_error() {
        assert_eq!(serve(&["serve", "--bind", "[::1]:0"]).0, "[::1]:0");
        assert_eq!(serve(&["serve", "--bind", "localhost:0"]).0, "localhost:0");
        refused("serve --bind nonsense", "use HOST:PORT");
        refused("serve --bind :99999", "not an address to listen on");
        refused("serve --bind 127.0.0.1", "use HOST:PORT");
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

    #[test]
    fn stream_mode_takes_its_stream_and_group_on_every_role() {
        for role in [
            "run --backend redis",
            "chef",
            "diner",
            "serve --backend redis",
        ] {
            let line = format!("{role} --mode stream --stream s --group g");
            let args: Vec<&str> = line.split(' ').collect();
            let o = match parse(&args).unwrap_or_else(|e| panic!("{line}: {e}")) {
                Command::Kitchen {
                    config:
                        KitchenConfig {
                            backend: BackendConfig::Redis(o),
                            ..
                        },
                    ..
                } => o,
                Command::Serve {
                    config:
                        ServeConfig {
                            backend: BackendConfig::Redis(o),
                            ..
                        },
                    ..
                } => o,
                other => panic!("{line} gave {other:?}"),
            };
            assert_eq!(
                (o.mode, o.stream.as_str(), o.group.as_str()),
                (Mode::Stream, "s", "g"),
                "{line}"
            );
        }
        let o = redis(&["diner"]);
        assert_eq!(
            (o.stream.as_str(), o.group.as_str()),
            (defaults::STREAM, defaults::GROUP)
        );
        assert_eq!(redis(&["info", "--stream", "s"]).stream, "s");
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_its_password() {
        for url in [
            "redis://alice:pa/ss@127.0.0.1:x/5",
            "redis+unix:///tmp/r.sock?db=x&pass=S3cr3t",
        ] {
            let text = parse(&["info", "--redis-url", url])
                .expect_err(url)
                .to_string();
            assert!(text.contains("invalid --redis-url"), "{text}");
            for secret in ["pa/ss", "ss@", "S3cr3t"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn dead_commands_name_their_letters_and_where_they_are() {
        let dead = |args: &[&str]| match parse(args) {
            Ok(Command::Dead { redis, command }) => (redis, command),
            other => panic!("{args:?}: {other:?}"),
        };
        let (redis, command) = dead(&["dead", "requeue", "a", "b"]);
        assert_eq!(
            command,
            DeadCommand::Requeue(Which::Ids(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            (redis.mode, redis.queue.as_str()),
            (Mode::List, defaults::QUEUE)
        );
        assert_eq!(
            dead(&["dead", "purge", "--all"]).1,
            DeadCommand::Purge(Which::All)
        );
        let (redis, command) = dead(&[
            "dead", "list", "--json", "--mode", "stream", "--stream", "s",
        ]);
        assert_eq!((redis.mode, redis.stream.as_str()), (Mode::Stream, "s"));
        assert_eq!(
            command,
            DeadCommand::List {
                json: true,
                limit: None
            }
        );
        refused("dead requeue", "<ID>");
        refused("dead purge --all a", "cannot be used with");
        refused("dead list --mode pubsub", "takes --mode list or stream");
        refused("dead list --stream s", "--stream names the stream");
        refused(
            "dead list --mode stream --queue q",
            "--queue does not apply",
        );
        refused("dead list --channel c", "--channel does not apply");
        refused("dead list --backend local", "needs --backend redis");
    }

    #[test]
    fn retry_flags_reach_every_role_that_eats() {
        let c = config(&["run", "--max-attempts", "5", "--retry-delay", "0.5"]);
        assert_eq!(
            c.retry,
            Retry {
                max_attempts: 5,
                delay: Duration::from_millis(500)
            }
        );
        assert_eq!(
            config(&["diner", "--retry-delay", "0"]).retry.delay,
            Duration::ZERO
        );
        assert_eq!(config(&[]).retry, Retry::default());
        let (_, serve) = serve(&["serve", "--max-attempts", "1"]);
        assert_eq!(serve.retry.max_attempts, 1);
        refused("run --max-attempts 0", "is not a number of attempts");
        refused("serve --retry-delay -1", "must be 0 seconds or more");
        refused("run --retry-delay 90000", "over a day");
        refused("diner --batch 5001", "5001");
        refused("run --dead-max 5", "--dead-max applies to --backend redis");
        assert_eq!(redis(&["diner", "--dead-max", "7"]).dead_max, 7);
    }

    #[test]
    fn cluster_takes_database_zero_and_ignores_the_default_five() {
        let o = redis(&["run", "--backend", "redis", "--cluster"]);
        assert!(o.cluster && o.shards == 1 && !o.durable);
        let o = redis(&[
            "chef",
            "--cluster",
            "--redis-url",
            "redis://h:7000/0",
            "--durable",
        ]);
        assert!(o.cluster && o.durable);
        let err = parse(&[
            "chef",
            "--cluster",
            "--redis-url",
            "redis://u:S3cr3t@h:7000/5",
        ])
        .expect_err("db 5 on a cluster")
        .to_string();
        assert!(
            err.contains("database 5") && err.contains("only database 0"),
            "{err}"
        );
        assert!(!err.contains("S3cr3t"), "{err}");
        let err = parse(&["diner", "--cluster", "--redis-url", "redis+unix:///r.sock"])
            .expect_err("a socket on a cluster")
            .to_string();
        assert!(err.contains("redis://host:port"), "{err}");
        let err = parse(&["run", "--cluster"]).expect_err("local").to_string();
        assert!(
            err.contains("--cluster applies to --backend redis"),
            "{err}"
        );
    }

    #[test]
    fn shards_are_for_lists_and_need_room_for_one_each() {
        assert_eq!(redis(&["chef", "--shards", "3"]).shards, 3);
        for (args, want) in [
            (
                &["chef", "--shards", "3", "--mode", "stream"][..],
                "needs --mode list",
            ),
            (
                &["chef", "--shards", "4", "--capacity", "3"][..],
                "below --shards 4",
            ),
            (&["chef", "--shards", "65"][..], "65"),
            (&["chef", "--shards", "0"][..], "0"),
            (
                &["chef", "--durable", "--mode", "pubsub"][..],
                "--durable does not apply",
            ),
        ] {
            let err = parse(args).expect_err(want).to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
