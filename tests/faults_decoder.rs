//! Faults: property tests over the dish decoder, the one function every
//! payload from outside goes through. It never panics, reads back whatever a
//! chef wrote and whatever another producer wrote in its own style, refuses a
//! dish cut short, and reads what it accepted the same way once re-encoded.

use kitchen::dish::{Dish, DishId, MAX_DISH, Payload};
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
            payload: Payload::Number(number),
            chef,
            made_at_us,
            track,
            attempt: 1,
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
                format!(r#""dish":{}"#, d.payload),
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
        // A partial read, a payload truncated in transit: once it is
        // recognisably kitchen's envelope (`{"id":`), never a dish. (Shorter
        // scraps are any producer's text, and any text is a dish.)
        let wire = d.encode();
        let start = r#"{"id":"#.len();
        let short = &wire.as_bytes()[..start + cut.index(wire.len() - start)];
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
    fn bare_integers_from_0_to_9_are_dish_numbers_and_others_json(n in any::<i64>(), pad in "[ \t\r\n]{0,3}") {
        // As `redis-cli LPUSH queue 7` sends it, or with the line's end left on.
        let got = Dish::decode(format!("{pad}{n}{pad}").as_bytes()).map(|d| (d.payload, d.id));
        let want = if (0..=i64::from(MAX_DISH)).contains(&n) {
            Payload::Number(n as u8)
        } else {
            Payload::Json(n.to_string().into())
        };
        prop_assert_eq!(got, Ok((want, DishId::NONE)));
    }

    #[test]
    fn any_text_or_json_from_another_producer_is_a_dish_that_reads_back(text in "\\PC{0,80}") {
        if text.trim_start().starts_with(r#"{"id":"#) {
            return Ok(());
        }
        let d = Dish::decode(text.as_bytes());
        prop_assert!(d.is_ok(), "{:?}", text);
        let d = d.unwrap();
        prop_assert_eq!(Dish::decode(d.encode().as_bytes()), Ok(d));
    }

    #[test]
    fn a_corrupt_envelope_of_ours_is_refused(n in any::<f64>()) {
        // Our keys, wrong values: not another producer's JSON, a damaged dish.
        for wire in [
            format!(r#"{{"id":{n},"dish":1,"made_at":1}}"#),
            r#"{"id":"x-1","dish":1,"made_at":1}"#.to_owned(),
            format!(r#"{{"id":"00000000000000ab-1","dish":1,"made_at":-{}}}"#, n.abs().max(1.0)),
            r#"{"made_at":1,"id":"00000000000000ab-1"}"#.to_owned(),
        ] {
            prop_assert!(Dish::decode(wire.as_bytes()).is_err(), "{wire}");
        }
    }
}
