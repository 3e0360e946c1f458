//! Hash slots: where a key lives on a Redis Cluster, and the names that keep
//! every key of one queue in one slot (and the shards of one queue apart).
//!
//! Redis Cluster hashes a key on its *hash tag* (the text between the first
//! `{` and the first `}` after it, when not empty), else on its whole name.
//! A script or `MULTI` may touch only keys of one slot. So every helper key
//! of a queue `Q` is named `P:suffix`, where the prefix `P` hashes like `Q`:
//!
//! - `Q` without a hash tag (the tutorial's `task:prodcons:queue`) hashes on
//!   its whole name, so `P` = `{Q}` (`{task:prodcons:queue}:room`);
//! - `Q` with a hash tag (`jobs{eu}`) hashes on the tag, so `P` = `Q`
//!   (`jobs{eu}:room`).
//!
//! The queue key itself never changes, so `redis-cli LPUSH Q 7` and the
//! tutorial's Flask app keep working. The same holds on a single Redis,
//! where slots mean nothing: one layout everywhere.

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// The hash tag of `key`, if it has one (Redis's rule: first `{`, then the
/// first `}` after it, with something between).
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// The prefix of every helper key of `queue`: a name that hashes to the
/// queue's slot (see the module docs).
pub(crate) fn prefix(queue: &str) -> String {
    if hash_tag(queue).is_some() {
        queue.to_owned()
    } else {
        format!("{{{queue}}}")
    }
}

/// Why `queue` cannot have helper keys in its own slot, if it cannot: a name
/// with a `}` and no hash tag hashes on its whole name, which no tag can
/// spell (a tag ends at the first `}`).
pub fn slot_problem(queue: &str) -> Option<String> {
    (hash_tag(queue).is_none() && queue.contains('}')).then(|| {
        format!(
            "`{queue}` has a `}}` but no hash tag, so its helper keys cannot share its hash slot: drop the braces, or give it a tag (`{{name}}`)"
        )
    })
}

/// The cluster hash slot of `key` (CRC16-XMODEM of its hash tag or name,
/// modulo 16384), as `CLUSTER KEYSLOT` answers.
pub(crate) fn keyslot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16(hashed.as_bytes()) % SLOTS
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The queue key of shard `i` of `n` of the logical queue `queue`.
///
/// Shard 0 is `queue` itself, so other producers (`LPUSH Q 7`) still reach
/// the queue, and one shard is exactly the unsharded layout. Shard `i` ≥ 1
/// has its own hash tag, the queue's tag (or its whole name) with
/// `:shard:<i>:<k>` appended, `k` the smallest number that puts the shard in
/// the `i`-th of `n` equal ranges of slots counted from shard 0's range. A
/// cluster made by `redis-cli --cluster create` gives each master one equal
/// run of slots, so `n` shards over `n` masters land one per master; every
/// process computes the same names, with no state in Redis.
pub(crate) fn shard_key(queue: &str, i: usize, n: usize) -> String {
    if i == 0 || n <= 1 {
        return queue.to_owned();
    }
    let n_slots = usize::from(SLOTS);
    let range = n_slots.div_ceil(n);
    let first = usize::from(keyslot(queue)) / range;
    let want = (first + i) % n;
    let name = |k: usize| match hash_tag(queue) {
        Some(tag) => {
            let open = queue.find('{').unwrap_or(0);
            let after = open + 1 + tag.len() + 1;
            format!(
                "{}{{{tag}:shard:{i}:{k}}}{}",
                &queue[..open],
                queue.get(after..).unwrap_or_default()
            )
        }
        None => format!("{{{queue}:shard:{i}:{k}}}"),
    };
    // About n tries on average; the bound only guards against a bug.
    (0..100_000)
        .map(name)
        .find(|key| usize::from(keyslot(key)) / range == want)
        .unwrap_or_else(|| name(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hash_tag("task:prodcons:queue"), None);
        assert_eq!(hash_tag("{user1000}.following"), Some("user1000"));
        assert_eq!(hash_tag("foo{}{bar}"), None);
        assert_eq!(hash_tag("foo{{bar}}zap"), Some("{bar"));
        assert_eq!(hash_tag("foo{bar}{zap}"), Some("bar"));
    }

    #[test]
    fn slots_match_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(keyslot("foo"), 12182);
        assert_eq!(keyslot("bar"), 5061);
        assert_eq!(keyslot("{foo}:room"), 12182);
        assert_eq!(keyslot("123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn helper_keys_share_the_queue_slot() {
        for q in ["task:prodcons:queue", "jobs{eu}", "{a}b"] {
            let p = prefix(q);
            assert_eq!(keyslot(&format!("{p}:room")), keyslot(q), "{q}");
            assert_eq!(keyslot(&format!("{p}:processing:diner-1")), keyslot(q));
        }
        assert_eq!(prefix("task:prodcons:queue"), "{task:prodcons:queue}");
        assert_eq!(prefix("jobs{eu}"), "jobs{eu}");
        assert!(slot_problem("a}b").is_some());
        assert!(slot_problem("task:prodcons:queue").is_none());
    }

    #[test]
    fn shards_fall_in_distinct_ranges() {
        for q in ["task:prodcons:queue", "jobs{eu}x"] {
            assert_eq!(shard_key(q, 0, 3), q);
            let range = usize::from(SLOTS).div_ceil(3);
            let mut ranges: Vec<usize> = (0..3)
                .map(|i| usize::from(keyslot(&shard_key(q, i, 3))) / range)
                .collect();
            ranges.sort_unstable();
            assert_eq!(ranges, [0, 1, 2], "{q}");
        }
        let s = shard_key("jobs{eu}x", 1, 3);
        assert!(
            s.starts_with("jobs{eu:shard:1:") && s.ends_with("}x"),
            "{s}"
        );
    }
}
