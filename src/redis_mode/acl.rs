//! ACL denials (`NOPERM`): which command, key or channel the user lacks, and the `ACL SETUSER` that grants it.
//!
//! Redis names a denied command in its reply to a command sent alone
//! (`NOPERM this user has no permissions to run the 'xadd' command`), but
//! not one a script ran (`The user executing the script can't run this
//! command or subcommand`): then kitchen asks Redis, with
//! `redis.acl_check_cmd` (Redis 7), which of the commands its scripts run
//! the user may not.

use redis::{Connection, ConnectionLike, RedisError, RedisResult, Value};

use crate::vocab::Fault;

/// Whether `e` is an ACL denial, of a command sent alone or run by a script.
pub(crate) fn is_denied(e: &RedisError) -> bool {
    let text = e.to_string();
    e.code() == Some("NOPERM") || text.contains("NOPERM") || text.contains(IN_SCRIPT)
}

/// How Redis begins a denial inside a script.
const IN_SCRIPT: &str = "The user executing the script can't";

/// The fault for a denial: what was denied, and the grant. `con`, when
/// given, is asked which command a script was denied.
pub(crate) fn fault(
    e: &RedisError,
    con: Option<&mut impl ConnectionLike>,
    url: &str,
    key: &str,
) -> Fault {
    let url = crate::vocab::redact_url(url);
    let text = e.to_string();
    let user = crate::redis_url::user(&url);
    let (what, rule) = if let Some(cmd) = quoted_command(&text) {
        (format!("the command '{cmd}'"), format!("+{cmd}"))
    } else if text.contains("channel") {
        (
            "a channel (kitchen's --channel, task:pubsub:channel by default)".to_owned(),
            "'&CHANNEL'".to_owned(),
        )
    } else if text.contains("key") {
        (
            format!("a key (kitchen's keys start with {key})"),
            format!("'~{key}*' '~{{{key}}}*'"),
        )
    } else {
        match con.and_then(|c| denied_in_scripts(c, key)) {
            Some(cmds) if !cmds.is_empty() => (
                format!(
                    "{} '{}' (in a script)",
                    if cmds.len() == 1 {
                        "the command"
                    } else {
                        "the commands"
                    },
                    cmds.join("', '")
                ),
                cmds.iter()
                    .map(|c| format!("+{c}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => (
                "a command one of kitchen's scripts runs (Redis does not say which)".to_owned(),
                "+@list +@stream +@set +@sortedset +@string +@keyspace -@dangerous".to_owned(),
            ),
        }
    };
    Fault::NoPermission {
        url,
        fix: format!("ACL SETUSER {user} {rule}"),
        user,
        what,
    }
}

/// Subscribes `con` to `channel`, the reply read: the crate's
/// `PubSub::subscribe` takes an error reply for a confirmation, so a user
/// denied the channel (`NOPERM`) would wait for dishes that never come.
/// Use the connection through `as_pubsub` afterwards.
pub(crate) fn subscribe(con: &mut Connection, channel: &str) -> RedisResult<()> {
    con.send_packed_command(&redis::cmd("SUBSCRIBE").arg(channel).get_packed_command())?;
    match con.recv_response()? {
        Value::ServerError(e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// `xadd` from `… to run the 'xadd' command`; `client|setinfo` from `…
/// the 'client|setinfo' command`.
fn quoted_command(text: &str) -> Option<String> {
    if !text.contains("to run the") {
        return None;
    }
    let cmd = text.split('\'').nth(1)?.trim();
    (!cmd.is_empty()).then(|| cmd.to_lowercase())
}

/// Every command kitchen's scripts run, as `redis.acl_check_cmd` takes it
/// (`K` stands for the queue's key): a denial inside a script names none.
const SCRIPT_COMMANDS: &[&[&str]] = &[
    &["del", "K"],
    &["exists", "K"],
    &["get", "K"],
    &["llen", "K"],
    &["lpop", "K"],
    &["lpush", "K", "x"],
    &["lrem", "K", "0", "x"],
    &["ltrim", "K", "0", "1"],
    &["pexpire", "K", "1"],
    &["rpop", "K"],
    &["rpush", "K", "x"],
    &["sadd", "K", "x"],
    &["set", "K", "x"],
    &["smembers", "K"],
    &["srem", "K", "x"],
    &["xack", "K", "g", "0-1"],
    &["xadd", "K", "*", "f", "v"],
    &["xgroup", "create", "K", "g", "$"],
    &["xgroup", "createconsumer", "K", "g", "c"],
    &["xgroup", "delconsumer", "K", "g", "c"],
    &["xinfo", "groups", "K"],
    &["xinfo", "consumers", "K", "g"],
    &["xinfo", "stream", "K"],
    &["xlen", "K"],
    &["xpending", "K", "g"],
    &["xtrim", "K", "MAXLEN", "0"],
    &["zadd", "K", "0", "x"],
    &["zcard", "K"],
    &["zpopmin", "K"],
    &["zrem", "K", "x"],
];

/// Asks, for each command of [`SCRIPT_COMMANDS`], whether the user may run
/// it; ARGV holds each as its length, then its words.
const PROBE: &str = r"
local denied = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {}
  for j = 1, n do args[j] = ARGV[i + j] end
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(args))
  if ok and not allowed then
    local name = args[1]
    if name == 'xgroup' or name == 'xinfo' then name = name .. '|' .. args[2] end
    table.insert(denied, name)
  end
  i = i + n + 1
end
return denied
";

/// The commands of kitchen's scripts the user may not run; `None` when
/// Redis cannot say (before 7.0, or `EVAL` itself denied).
fn denied_in_scripts(con: &mut impl ConnectionLike, key: &str) -> Option<Vec<String>> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(PROBE).arg(1).arg(key);
    for words in SCRIPT_COMMANDS {
        cmd.arg(words.len());
        for w in *words {
            cmd.arg(if *w == "K" { key } else { w });
        }
    }
    cmd.query(con).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_denied_alone_is_named_from_redis_s_words() {
        assert_eq!(
            quoted_command("NOPERM this user has no permissions to run the 'xadd' command"),
            Some("xadd".to_owned())
        );
        assert_eq!(
            quoted_command("NOPERM User k has no permissions to run the 'XINFO|GROUPS' command"),
            Some("xinfo|groups".to_owned())
        );
        assert_eq!(
            quoted_command("NOPERM this user has no permissions to access one of the keys"),
            None
        );
    }
}
