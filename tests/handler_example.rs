//! The handler example (`examples/handler.rs`) runs: word counts come back as results.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../examples/handler.rs"]
mod handler;

#[test]
fn the_word_counting_handler_answers_through_the_web_entry() {
    let results = handler::run_example(&["the quick brown fox", "one", "  spaced   out  "])
        .expect("the example runs");
    let outputs: Vec<(&str, &str)> = results
        .iter()
        .map(|(_, r)| {
            (
                r["status"].as_str().unwrap_or(""),
                r["output"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(outputs, [("eaten", "4"), ("eaten", "1"), ("eaten", "2")]);
}
