//! The "Redis Message Queue" page: the tutorial's two links, plus live figures.

use std::fmt::Write as _;

use crate::serve::metrics::Snapshot;

/// How often the page reloads itself when JavaScript is off, in seconds:
/// slow enough to read it and press a button in between.
const RELOAD_S: u32 = 5;

/// The page as of `snap`, with `live` (the sparklines, failures and dead
/// letters, already escaped HTML) under the figures. Its script refreshes
/// the figures from `/stats` and the live section from `/live` every
/// second; without script the page reloads itself every [`RELOAD_S`].
pub fn render(
    snap: &Snapshot,
    pubsub_note: Option<&str>,
    live: &str,
    (dead, dead_key): &(String, String),
) -> String {
    let figure = |v: Option<usize>| v.map_or_else(|| "–".to_owned(), |n| n.to_string());
    let capacity = snap
        .capacity
        .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
    let note = pubsub_note
        .map(|n| format!(r#"<span class="note">{n}</span>"#))
        .unwrap_or_default();
    let mut page = String::with_capacity(4096);
    // Only numbers and fixed strings of ours go into the page here, and
    // `live`, escaped where it was made.
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Redis Message Queue</title>
<noscript><meta http-equiv="refresh" content="{RELOAD_S}"></noscript>
<style>
  :root {{ color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #e3e6ec; --accent: #c0392b; }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; font: 16px/1.5 system-ui, "DejaVu Sans", sans-serif; color: var(--ink); background: #f6f7f9; }}
  main {{ max-width: 42rem; margin: 3rem auto; padding: 0 1.25rem; }}
  h1 {{ margin: 0 0 .25rem; font-size: 1.9rem; letter-spacing: -.01em; }}
  p.sub {{ margin: 0 0 2rem; color: var(--muted); }}
  ul.modes {{ list-style: none; padding: 0; margin: 0 0 2rem; display: grid; gap: .75rem; }}
  ul.modes a {{ display: block; padding: .9rem 1.1rem; border: 1px solid var(--line); border-radius: .6rem;
               background: #fff; color: var(--accent); font-weight: 600; text-decoration: none; }}
  ul.modes a:hover {{ border-color: var(--accent); }}
  .note {{ display: block; font-weight: 400; font-size: .85rem; color: var(--muted); }}
  p.note {{ margin: .75rem 0 0; }}
  dl {{ display: grid; grid-template-columns: repeat(4, 1fr); gap: .75rem; margin: 0; }}
  dl div {{ background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: .8rem 1rem; }}
  dt {{ font-size: .8rem; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }}
  dd {{ margin: .2rem 0 0; font-size: 1.6rem; font-weight: 650; font-variant-numeric: tabular-nums; }}
  footer {{ margin-top: 2rem; font-size: .85rem; color: var(--muted); }}
  footer a {{ color: var(--muted); }}
  h2 {{ margin: 2rem 0 .6rem; font-size: 1.05rem; }}
  .sparks {{ display: grid; grid-template-columns: repeat(2, 1fr); gap: .75rem; }}
  figure {{ margin: 0; background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: .6rem .8rem; }}
  figcaption {{ font-size: .8rem; color: var(--muted); }}
  svg.spark {{ display: block; width: 100%; height: 40px; }}
  svg.spark polyline {{ fill: none; stroke: var(--accent); stroke-width: 1.5; }}
  svg.spark .axis {{ stroke: var(--line); }}
  ol.failures, ul.dead {{ padding-left: 1.2rem; margin: 0; font-size: .9rem; }}
  ol.failures li, ul.dead li {{ margin: .3rem 0; }}
  .when, .reason {{ color: var(--muted); }}
  .reason {{ font-family: ui-monospace, monospace; font-size: .8rem; white-space: pre-wrap; }}
  form.inline {{ display: inline; }}
  @media (max-width: 34rem) {{ dl {{ grid-template-columns: repeat(2, 1fr); }} .sparks {{ grid-template-columns: 1fr; }} }}
</style>
</head>
<body>
<main>
<h1>Redis Message Queue</h1>
<p class="sub">Every click queues a random dish; diners eat them. Backend: <strong>{backend}</strong>, queue capacity <span id="capacity">{capacity}</span>.</p>
<ul class="modes">
  <li><a id="prodcons" href="/prodcons">producer-consumer mode</a></li>
  <li><a id="pubsub" href="/pubsub">publish-subscribe mode{note}</a></li>
</ul>
<dl>
  <div><dt>queued</dt><dd id="queued">{queued}</dd></div>
  <div><dt>made</dt><dd id="made">{made}</dd></div>
  <div><dt>eaten</dt><dd id="eaten">{eaten}</dd></div>
  <div><dt>subscribers</dt><dd id="subscribers">{subscribers}</dd></div>
</dl>
{diners_note}<div id="live">
{live}</div>
<div id="dead-letters" data-key="{dead_key}">
{dead}</div>
<footer>Figures: <a href="/stats">/stats</a> · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></footer>
</main>
<script>
(function () {{
  var ids = ["queued", "made", "eaten", "subscribers"];
  function show(s) {{
    ids.forEach(function (k) {{
      var v = s[k];
      document.getElementById(k).textContent = (v === null || v === undefined) ? "\u2013" : v;
    }});
  }}
  setInterval(function () {{
    fetch("/stats", {{ cache: "no-store" }}).then(function (r) {{ return r.ok ? r.json() : null; }})
      .then(function (s) {{ if (s) show(s); }}).catch(function () {{}});
    fetch("/live", {{ cache: "no-store" }}).then(function (r) {{ return r.ok ? r.text() : null; }})
      .then(function (h) {{ if (h !== null) document.getElementById("live").innerHTML = h; }})
      .catch(function () {{}});
    var dead = document.getElementById("dead-letters");
    fetch("/live/dead", {{ cache: "no-store" }}).then(function (r) {{
      var key = r.headers.get("X-Content-Key");
      if (!r.ok || key === dead.dataset.key) return;
      return r.text().then(function (h) {{ dead.innerHTML = h; dead.dataset.key = key; }});
    }}).catch(function () {{}});
  }}, 1000);
}})();
</script>
</body>
</html>
"#,
        backend = snap.backend,
        queued = figure(snap.queued),
        made = snap.made,
        eaten = figure(snap.eaten.map(|n| n as usize)),
        subscribers = figure(snap.subscribers),
        diners_note = if snap.eaten.is_none() {
            r#"<p class="note">The diners are <code>kitchen diner</code> processes; each counts what it ate in its own summary.</p>
"#
        } else {
            ""
        },
    );
    page
}
