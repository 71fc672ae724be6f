//! The console's page shell: head, navigation, styles (inline, nothing from a CDN), and small
//! pieces every page uses (status badges, times). Rendered with `maud`, which escapes every
//! value it interpolates.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Which navigation entry is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// Integrations.
    Integrations,
    /// Runs.
    Runs,
    /// Flows.
    Flows,
    /// Try it.
    Try,
    /// Channels.
    Channels,
    /// Plugins.
    Plugins,
    /// None (sign-in).
    None,
}

const STYLE: &str = r#"
:root { --fg:#1d2430; --muted:#5b6575; --line:#d8dde5; --bg:#f6f7f9; --ok:#17703a; --okbg:#dff3e6;
  --warn:#8a5a00; --warnbg:#fff1d6; --bad:#a61b1b; --badbg:#fde2e2; --accent:#2456c9; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1d2430; color:#fff; padding:.6em 1em; display:flex; flex-wrap:wrap; gap:.4em 1.2em; align-items:center; }
header a { color:#fff; text-decoration:none; padding:.2em .1em; }
header a[aria-current=page] { border-bottom:2px solid #8fb0ff; }
header .brand { font-weight:700; margin-right:.6em; }
header form { margin-left:auto; }
main { max-width:72em; margin:0 auto; padding:1em; }
h1 { font-size:1.4em; margin:.4em 0 .8em; }
h2 { font-size:1.15em; margin:1.4em 0 .6em; }
table { border-collapse:collapse; width:100%; background:#fff; }
.scroll { overflow-x:auto; border:1px solid var(--line); border-radius:6px; }
th, td { text-align:left; padding:.45em .6em; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:.9em; white-space:nowrap; }
code, pre { font:13px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background:#fff; border:1px solid var(--line); padding:.6em; overflow-x:auto; white-space:pre-wrap; word-break:break-word; }
.badge { display:inline-block; padding:.05em .55em; border-radius:1em; font-size:.85em; font-weight:600; white-space:nowrap; }
.ok { color:var(--ok); background:var(--okbg); } .warn { color:var(--warn); background:var(--warnbg); }
.bad { color:var(--bad); background:var(--badbg); } .muted { color:var(--muted); }
.banner { padding:.6em .8em; border-radius:6px; margin:0 0 1em; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:1em; margin:0 0 1em; }
form.inline { display:inline; }
label { display:block; font-weight:600; margin:.6em 0 .2em; }
input[type=text], input[type=password], input[type=url], select, textarea { width:100%; max-width:34em; padding:.4em; font:inherit; border:1px solid #aab3c0; border-radius:4px; }
button { font:inherit; padding:.35em .9em; border-radius:4px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
button.secondary { background:#fff; color:var(--accent); } button.danger { background:var(--bad); border-color:var(--bad); }
.field-error { color:var(--bad); margin:.2em 0 0; }
.filters { display:flex; flex-wrap:wrap; gap:.6em; align-items:flex-end; margin-bottom:1em; }
.filters label { margin:0; } .filters select, .filters input { width:auto; }
.chat { display:flex; flex-direction:column; gap:.4em; margin:1em 0; }
.bubble { max-width:80%; padding:.45em .75em; border-radius:12px; white-space:pre-wrap; }
.contact { align-self:flex-end; background:#2456c9; color:#fff; }
.tern { align-self:flex-start; background:#fff; border:1px solid var(--line); }
.tabs { display:flex; flex-wrap:wrap; gap:.3em .5em; align-items:center; margin:0 0 .6em; }
.tabs a { padding:.3em .7em; border:1px solid var(--line); border-radius:4px; background:#fff; text-decoration:none; color:var(--accent); }
.tabs a[aria-current=page] { background:var(--accent); color:#fff; border-color:var(--accent); }
.graph { background:#fff; border:1px solid var(--line); border-radius:6px; padding:.5em; overflow-x:auto; }
.graph img { max-width:100%; height:auto; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.25em 1em; margin:0; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; word-break:break-word; }
@media (max-width: 40em) { header form { margin-left:0; } .bubble { max-width:95%; } }
"#;

/// A whole page.
pub fn page(title: &str, nav: Nav, csrf: Option<&str>, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! { a href=(href) aria-current=[(nav == target).then_some("page")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Tern" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "Tern" }
                    @if let Some(csrf) = csrf {
                        nav aria-label="Console" {
                            (item(Nav::Integrations, "/", "Integrations")) " "
                            (item(Nav::Runs, "/runs", "Runs")) " "
                            (item(Nav::Flows, "/flows", "Flows")) " "
                            (item(Nav::Channels, "/channels", "Channels")) " "
                            (item(Nav::Plugins, "/plugins", "Plugins")) " "
                            (item(Nav::Try, "/try", "Try it"))
                        }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A run status as a coloured badge with words.
pub fn run_status(status: &str) -> Markup {
    let (class, words) = match status {
        "completed" => ("ok", "Completed"),
        "paused" => ("warn", "Waiting for the contact"),
        "failed" => ("bad", "Failed"),
        "no_flow" => ("muted", "No flow matched"),
        "no_paused_run" => ("muted", "No paused run"),
        other => ("muted", other),
    };
    html! { span class={"badge " (class)} data-status=(status) { (words) } }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time_ms(ms: i64) -> String {
    crate::humanize::time_ms(ms).replace('T', " ").replace('Z', " UTC")
}

pub use crate::humanize::duration_ms;

/// Text written for a terminal, where `name` marks a name or a value, as HTML: each such part
/// in `<code>` (escaped like everything else), no backticks left. An odd backtick out stays.
pub fn prose(text: &str) -> Markup {
    let parts: Vec<&str> = text.split('`').collect();
    // With an even count of backticks the parts alternate text, code, text, …; a last,
    // unpaired one is kept as it was.
    let paired = if parts.len() % 2 == 1 { parts.len() } else { parts.len() - 1 };
    html! {
        @for (i, part) in parts.iter().enumerate() {
            @if i >= paired { "`" (part) }
            @else if i % 2 == 1 { code { (part) } }
            @else { (part) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prose;

    #[test]
    fn the_flow_pictures_use_the_page_s_font() {
        let body = format!("body {{ margin:0; font:15px/1.45 {}; ", tern_engine::graph::FONT_FAMILY);
        assert!(super::STYLE.contains(&body), "{}", super::STYLE);
    }

    #[test]
    fn backticks_become_code_and_everything_is_escaped() {
        assert_eq!(prose("`nope` is not <a> URL").into_string(), "<code>nope</code> is not &lt;a&gt; URL");
        assert_eq!(
            prose("set it with `tern secrets set NAME`)").into_string(),
            "set it with <code>tern secrets set NAME</code>)"
        );
        assert_eq!(prose("plain").into_string(), "plain");
        assert_eq!(prose("one ` alone").into_string(), "one ` alone");
        assert_eq!(prose("`a` and ` b").into_string(), "<code>a</code> and ` b");
    }
}
