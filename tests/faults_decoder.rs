//! Faults: property tests over the dish decoder, the one function every
//! payload from outside goes through. It never panics, accepts exactly the
//! dishes 0-9, and reads back whatever a chef wrote.

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(d) = Dish::decode(&bytes) {
            prop_assert!(d.number <= MAX_DISH);
        }
    }

    #[test]
    fn what_a_chef_writes_is_read_back(d in any_dish()) {
        prop_assert_eq!(Dish::decode(d.encode().as_bytes()), Ok(d));
    }

    #[test]
    fn a_damaged_dish_is_refused_or_still_a_dish(d in any_dish(), cut in 0usize..200, byte in any::<u8>()) {
        // Truncated or with one byte replaced: refused, or (rarely) another valid dish.
        let mut wire = d.encode().into_bytes();
        let at = cut % wire.len();
        let mut damaged = wire.clone();
        damaged[at] = byte;
        wire.truncate(at);
        for bytes in [wire, damaged] {
            if let Ok(other) = Dish::decode(&bytes) {
                prop_assert!(other.number <= MAX_DISH);
            }
        }
    }

    #[test]
    fn bare_integers_are_dishes_only_from_0_to_9(n in any::<i64>()) {
        let got = Dish::decode(n.to_string().as_bytes());
        if (0..=i64::from(MAX_DISH)).contains(&n) {
            prop_assert_eq!(got.map(|d| i64::from(d.number)), Ok(n));
        } else {
            prop_assert_eq!(got, Err(DecodeError::OutOfRange(n)));
        }
    }

    #[test]
    fn json_dish_numbers_out_of_range_are_refused(n in any::<i64>(), seq in any::<u64>()) {
        let wire = format!(r#"{{"id":"00000000000000ab-{seq}","dish":{n},"made_at":1}}"#);
        let got = Dish::decode(wire.as_bytes());
        if (0..=i64::from(MAX_DISH)).contains(&n) {
            prop_assert!(got.is_ok(), "{wire}");
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
