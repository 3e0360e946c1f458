//! Faults: races opened on purpose with a slow network (a proxy that delays
//! every reply), against a real redis-server, through the library API.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use kitchen::Shutdown;
use kitchen::queue::{Backend, BackendConfig, Capacity, Mode, RedisOptions, ResultLimits, Take};
use support::redis_kitchen::QUEUE;
use support::redis_server::RedisServer;
use support::slow_proxy::SlowProxy;
use support::{LIMIT, join_within, wait_until};

fn lmoves(server: &RedisServer) -> u64 {
    server.command_calls().get("lmove").copied().unwrap_or(0)
}

/// Regression: a diner that found the queue empty, then saw "every chef is
/// done", closed, although the last chef's last dish had landed in between
/// (how a `run --backend redis` could report eaten 299 of 300, left 1). The
/// slow reply holds the diner in exactly that window.
#[test]
fn a_dish_pushed_while_the_diner_looks_is_not_left_behind() {
    let server = RedisServer::start();
    let proxy = SlowProxy::start(server.port(), Duration::from_millis(300));
    let url = format!("redis://127.0.0.1:{}/5", proxy.port());
    let backend = Backend::open(
        &BackendConfig::Redis(RedisOptions::new(url, Mode::List)),
        Capacity::Bounded(10),
        ResultLimits::default(),
    )
    .expect("open through the proxy");
    let mut diner = backend.consumer();
    diner.ready().expect("ready");
    let before = lmoves(&server);
    let finished = Shutdown::new();
    let take = std::thread::spawn({
        let finished = finished.clone();
        move || diner.take(&finished)
    });
    // The last chef: once the diner's look at the empty queue has run in
    // Redis (its reply still on the slow way back), it pushes its last dish
    // and reports done.
    wait_until(LIMIT, "the diner's look", || lmoves(&server) > before);
    let _: u64 = server.query(&["LPUSH", QUEUE, "7"]);
    finished.stop();
    let take = join_within(take, LIMIT, "the diner's take").expect("take");
    match take {
        Take::Dish { dish, .. } => assert_eq!(dish.number(), Some(7)),
        other => panic!("{other:?}: the last dish was left behind"),
    }
}
