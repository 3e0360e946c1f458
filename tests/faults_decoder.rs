//! Faults: property tests over the dish decoder, the one function every
//! payload from outside goes through. It never panics, reads back whatever a
//! chef wrote and whatever another producer wrote in its own style, refuses a
//! dish cut short, and reads what it accepted the same way once re-encoded.

use kitchen::dish::{DecodeError, Dish, DishId, MAX_DISH};
use proptest::prelude::*;

fn any_dish() -> impl Strategy<Value = Dish> {
    (
        (any::<u64>(), any::<u64>()),
        0..=MAX_DISH,
        any::<u32>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|((origin, seq), number, chef, made_at_us, track)| Dish {
            id: DishId { origin, seq },
            number,
            chef,
            made_at_us,
            track,
        })
}

/// A dish and its JSON as a producer other than kitchen might write it: the
/// keys in any order, spaces after separators, the id's hex in upper case,
/// `"track":false` spelled out, blank space around the object.
fn foreign_dish() -> impl Strategy<Value = (Dish, String)> {
    (any_dish(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_flat_map(|(d, upper, spaced, explicit_track)| {
            let origin = if upper {
                format!("{:016X}", d.id.origin)
            } else {
                format!("{:016x}", d.id.origin)
            };
            let mut fields = vec![
                format!(r#""id":"{origin}-{}""#, d.id.seq),
                format!(r#""dish":{}"#, d.number),
                format!(r#""made_at":{}"#, d.made_at_us),
            ];
            if d.chef != 0 {
                fields.push(format!(r#""chef":"chef-{}""#, d.chef));
            }
            if d.track || explicit_track {
                fields.push(format!(r#""track":{}"#, d.track));
            }
            (Just(d), Just(fields).prop_shuffle(), Just(spaced))
        })
        .prop_map(|(d, fields, spaced)| {
            let wire = if spaced {
                format!(" {{ {} }}\r\n", fields.join(", ").replace("\":", "\": "))
            } else {
                format!("{{{}}}", fields.join(","))
            };
            (d, wire)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_what_is_accepted_reads_back(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(d) = Dish::decode(&bytes) {
            prop_assert_eq!(Dish::decode(d.encode().as_bytes()), Ok(d));
        }
    }

    #[test]
    fn what_a_chef_writes_is_read_back(d in any_dish()) {
        prop_assert_eq!(Dish::decode(d.encode().as_bytes()), Ok(d));
    }

    #[test]
    fn another_producers_json_is_read_field_for_field((d, wire) in foreign_dish()) {
        prop_assert_eq!(Dish::decode(wire.as_bytes()), Ok(d), "{}", wire);
    }

    #[test]
    fn a_dish_cut_short_is_refused(d in any_dish(), cut in any::<prop::sample::Index>()) {
        // A partial read, a payload truncated in transit: never a dish.
        let wire = d.encode();
        let short = &wire.as_bytes()[..cut.index(wire.len())];
        prop_assert!(Dish::decode(short).is_err(), "{:?}", String::from_utf8_lossy(short));
    }

    #[test]
    fn a_damaged_dish_is_refused_or_a_dish_that_reads_back(
        d in any_dish(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut damaged = d.encode().into_bytes();
        let at = at.index(damaged.len());
        damaged[at] = byte;
        if let Ok(other) = Dish::decode(&damaged) {
            prop_assert_eq!(Dish::decode(other.encode().as_bytes()), Ok(other));
        }
    }

    #[test]
    fn bare_integers_are_dishes_only_from_0_to_9(n in any::<i64>(), pad in "[ \t\r\n]{0,3}") {
        // As `redis-cli LPUSH queue 7` sends it, or with the line's end left on.
        let got = Dish::decode(format!("{pad}{n}{pad}").as_bytes());
        if (0..=i64::from(MAX_DISH)).contains(&n) {
            prop_assert_eq!(got.map(|d| (i64::from(d.number), d.id)), Ok((n, DishId::NONE)));
        } else {
            prop_assert_eq!(got, Err(DecodeError::OutOfRange(n)));
        }
    }

    #[test]
    fn json_dish_numbers_out_of_range_are_refused(n in any::<i64>(), seq in any::<u64>()) {
        let wire = format!(r#"{{"id":"00000000000000ab-{seq}","dish":{n},"made_at":1}}"#);
        let got = Dish::decode(wire.as_bytes());
        if (0..=i64::from(MAX_DISH)).contains(&n) {
            let id = DishId { origin: 0xab, seq };
            prop_assert_eq!(got.map(|d| (i64::from(d.number), d.id)), Ok((n, id)), "{}", wire);
        } else {
            prop_assert_eq!(got, Err(DecodeError::OutOfRange(n)));
        }
    }

    #[test]
    fn json_of_the_wrong_shape_is_refused(
        key in "[a-z_]{1,8}",
        text in "\\PC{0,40}",
        n in any::<f64>(),
    ) {
        for wire in [
            format!(r#"{{"{key}":{n}}}"#),
            format!("[{n}, {n}]"),
            serde_json::to_string(&text).unwrap(),
            format!(r#"{{"id":{n},"dish":1,"made_at":1}}"#),
            format!(r#"{{"id":"00000000000000ab-1","dish":"{key}","made_at":1}}"#),
            format!(r#"{{"id":"00000000000000ab-1","dish":1,"made_at":-{}}}"#, n.abs().max(1.0)),
        ] {
            prop_assert!(Dish::decode(wire.as_bytes()).is_err(), "{wire}");
        }
    }
}
