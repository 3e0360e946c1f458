//! The "Redis Message Queue" page: the tutorial's two links, plus live figures.

use std::fmt::Write as _;

use crate::serve::metrics::Snapshot;

/// The page as of `snap`. Its script refreshes the figures from `/stats`
/// every second; without script the figures are those of the page load.
pub fn render(snap: &Snapshot, pubsub_note: Option<&str>) -> String {
    let figure = |v: Option<usize>| v.map_or_else(|| "–".to_owned(), |n| n.to_string());
    let capacity = snap
        .capacity
        .map_or_else(|| "unbounded".to_owned(), |c| c.to_string());
    let note = pubsub_note
        .map(|n| format!(r#"<span class="note">{n}</span>"#))
        .unwrap_or_default();
    let mut page = String::with_capacity(4096);
    // Only numbers and fixed strings of ours go into the page: nothing to escape.
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Redis Message Queue</title>
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
  @media (max-width: 34rem) {{ dl {{ grid-template-columns: repeat(2, 1fr); }} }}
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
{diners_note}<footer>Figures: <a href="/stats">/stats</a> · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></footer>
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
