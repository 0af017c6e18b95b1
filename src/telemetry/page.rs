//! The status page (`/`) and the badge (`/badge.svg`): the little green check mark, drawn from a
//! [`Verdict`] — the same one `trustfs status` prints.
//!
//! Self-contained: inline CSS and SVG, no scripts, no external assets (works offline, and the
//! page is served with a `Content-Security-Policy` that forbids anything else). It reloads
//! itself every [`RELOAD_SECS`] seconds. Every string that comes from metadata, file names or
//! the status record is escaped ([`esc`]): a target named `<script>` shows as text.

use std::fmt::Write as _;

use super::status::{in_words, seconds_until, Verdict};
use crate::schema::UtcTime;

/// The page reloads itself this often.
pub const RELOAD_SECS: u32 = 5;

const GREEN: &str = "#1a7f37";
const RED: &str = "#cf222e";

/// `s` as HTML text or attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (a file name may hold any byte but `/` and NUL) and the
            // marks that reorder text (`evil\u{202e}txt.exe` would read as `evilexe.txt`)
            // shown, not interpreted.
            c if (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The shield: green with a check mark, or red with a cross.
fn shield(verified: bool, size: u32) -> String {
    let (fill, mark, label) = if verified {
        (
            GREEN,
            r##"<path d="M19 37 L28 46 L46 26" fill="none" stroke="#fff" stroke-width="7" stroke-linecap="round" stroke-linejoin="round"/>"##,
            "verified",
        )
    } else {
        (
            RED,
            r##"<path d="M21 23 L43 45 M43 23 L21 45" fill="none" stroke="#fff" stroke-width="7" stroke-linecap="round"/>"##,
            "not verified",
        )
    };
    format!(
        r#"<svg class="shield" width="{size}" height="{h}" viewBox="0 0 64 72" role="img" aria-label="{label}"><path d="M32 2 L60 12 V34 C60 52 47 64 32 70 C17 64 4 52 4 34 V12 Z" fill="{fill}"/>{mark}</svg>"#,
        h = size * 72 / 64
    )
}

/// One table row of already escaped cells.
fn row(out: &mut String, cells: &[&str]) {
    out.push_str("<tr>");
    for (i, c) in cells.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        let _ = write!(out, "<{tag}>{c}</{tag}>");
    }
    out.push_str("</tr>\n");
}

/// The short word for the badge and the title: `verified`, or the main problem in one word.
fn state_word(v: &Verdict) -> &'static str {
    if v.verified {
        return "verified";
    }
    let any = |needle: &str| v.problems.iter().any(|p| p.contains(needle));
    if any("not a trustfs mount") || any("no status record") || any("not running") {
        "down"
    } else if any("expired") {
        "expired"
    } else if any("stale") || any("has not updated") {
        "stale"
    } else {
        "not verified"
    }
}

/// The status page for `v` at `now`.
pub fn html(v: &Verdict, now: UtcTime) -> String {
    let state = if v.verified {
        "verified"
    } else {
        "not-verified"
    };
    let word = state_word(v);
    let mark = if v.verified { "✔" } else { "✘" };
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{RELOAD_SECS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{mark} trustfs {mnt}: {word}</title>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0; background: #f6f8fa; color: #1f2328; }}
main {{ max-width: 60rem; margin: 0 auto; padding: 1.5rem; }}
.verdict {{ display: flex; gap: 1.25rem; align-items: center; padding: 1.25rem 1.5rem; border-radius: 12px; color: #fff; }}
.verdict.ok {{ background: {GREEN}; }} .verdict.bad {{ background: {RED}; }}
.verdict .shield path:first-child {{ stroke: #fff; stroke-width: 3; }}
.verdict h1 {{ margin: 0; font-size: 2rem; }}
.verdict p {{ margin: .2rem 0 0; }}
.mount {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }}
section {{ background: #fff; border: 1px solid #d0d7de; border-radius: 8px; margin-top: 1rem; padding: .75rem 1rem; }}
h2 {{ font-size: 1rem; margin: 0 0 .5rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .2rem .6rem .2rem 0; vertical-align: top; }}
th {{ font-weight: 600; white-space: nowrap; width: 1%; }}
td {{ overflow-wrap: break-word; }}
table.denials {{ table-layout: fixed; }} table.denials td {{ overflow-wrap: anywhere; }}
table.denials th {{ width: auto; }} table.denials th:nth-child(1) {{ width: 13rem; }} table.denials th:nth-child(2) {{ width: 22%; }}
table.denials th:nth-child(3) {{ width: 7.5rem; }} table.denials th:nth-child(5) {{ width: 7rem; }}
code, .mono {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }}
.problems li {{ color: {RED}; }}
.soon {{ color: #9a6700; font-weight: 600; }} .past {{ color: {RED}; font-weight: 600; }}
.muted {{ color: #59636e; }}
footer {{ color: #59636e; font-size: .85rem; margin-top: 1rem; }}
</style></head>
<body><main id="trustfs-status" data-state="{state}">
<header class="verdict {cls}">{shield}<div><h1>{headline}</h1><p class="mount">{mnt}</p><p>{sub}</p></div></header>
"#,
        mnt = esc(&v.mountpoint),
        cls = if v.verified { "ok" } else { "bad" },
        shield = shield(v.verified, 72),
        headline = if v.verified {
            "Verified"
        } else {
            "NOT verified"
        },
        sub = if v.verified {
            "Every file served matches signed, current TUF metadata."
        } else {
            "This mount cannot vouch for its content right now."
        },
    );
    if !v.problems.is_empty() {
        out.push_str("<section class=\"problems\"><h2>Problems</h2><ul>\n");
        for p in &v.problems {
            let _ = writeln!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul></section>\n");
    }
    if let Some(s) = &v.status {
        out.push_str("<section><h2>Mount</h2><table>\n");
        row(&mut out, &["repository", &mono(&s.repository)]);
        row(&mut out, &["content", &mono(&s.content)]);
        row(
            &mut out,
            &[
                "daemon",
                &format!("pid {}, up since {}", s.pid, esc(&s.started)),
            ],
        );
        row(
            &mut out,
            &[
                "record",
                &format!(
                    "written {} ({})",
                    esc(&s.updated),
                    in_words(s.updated_unix.saturating_sub(now.0))
                ),
            ],
        );
        out.push_str("</table></section>\n");

        let m = &s.metadata;
        out.push_str("<section><h2>Metadata</h2><table>\n");
        out.push_str("<tr><th>role</th><th>version</th><th>expires</th><th></th></tr>\n");
        for (role, version, expires) in [
            ("root", m.root_version, &m.root_expires),
            ("timestamp", m.timestamp_version, &m.timestamp_expires),
            ("snapshot", m.snapshot_version, &m.snapshot_expires),
            ("targets", m.targets_version, &m.targets_expires),
        ] {
            row(
                &mut out,
                &[
                    role,
                    &format!("v{version}"),
                    &mono(expires),
                    &countdown(expires, now),
                ],
            );
        }
        if !m.expires.is_empty() {
            row(
                &mut out,
                &[
                    "earliest",
                    &esc(&m.expires_role),
                    &mono(&m.expires),
                    &countdown(&m.expires, now),
                ],
            );
        }
        out.push_str("</table></section>\n");

        out.push_str("<section><h2>Trusted keys</h2><table>\n");
        for (role, k) in &m.keys {
            let ids: Vec<String> = k
                .keyids
                .iter()
                .map(|id| format!("<code title=\"{}\">{}</code>", esc(id), esc(short(id))))
                .collect();
            row(
                &mut out,
                &[
                    &esc(role),
                    &format!("{} of {}: {}", k.threshold, ids.len(), ids.join(" ")),
                ],
            );
        }
        out.push_str("</table></section>\n");

        let c = &s.counters;
        out.push_str("<section><h2>Activity</h2><table>\n");
        row(&mut out, &["targets", &s.targets.to_string()]);
        row(
            &mut out,
            &[
                "opens",
                &format!(
                    "{} served (verified), {} denied, {} faults",
                    c.served,
                    c.denied_total(),
                    c.faults_total()
                ),
            ],
        );
        row(&mut out, &["denied", &by_label(&c.denied)]);
        row(&mut out, &["faults", &by_label(&c.faults)]);
        row(
            &mut out,
            &[
                "verifications",
                &format!(
                    "{} passes, {:.3} s in total; {} opens without a verification pass",
                    c.verifications, c.verify_seconds, c.cache_hits
                ),
            ],
        );
        if let Some(f) = &c.last_fault {
            row(&mut out, &["last fault", &esc(f)]);
        }
        out.push_str("</table></section>\n");

        out.push_str("<section><h2>Refresh</h2><table>\n");
        match s.refresh_interval_secs {
            Some(every) => row(
                &mut out,
                &[
                    "live refresh",
                    &format!(
                        "every {every} s; stale after {} s without success",
                        s.stale_after_secs.unwrap_or(0)
                    ),
                ],
            ),
            None => row(
                &mut out,
                &[
                    "live refresh",
                    "off (no --refresh-interval): the metadata changes only on a remount",
                ],
            ),
        }
        row(
            &mut out,
            &[
                "confirmed",
                &format!(
                    "{} ({}){}",
                    esc(&s.confirmed),
                    in_words(s.confirmed_unix.saturating_sub(now.0)),
                    if s.stale {
                        " <span class=\"past\">stale</span>"
                    } else {
                        ""
                    }
                ),
            ],
        );
        row(
            &mut out,
            &[
                "refreshes",
                &format!(
                    "{} switched to new metadata, {} unchanged, {} failed",
                    c.metadata_switches, c.refresh_unchanged, c.refresh_failures
                ),
            ],
        );
        // When not verified, the problems at the top already say it.
        if let Some(p) = s.problem.as_ref().filter(|_| v.verified) {
            row(&mut out, &["note", &esc(p)]);
        }
        out.push_str("</table></section>\n");

        out.push_str("<section><h2>Last denials</h2>\n");
        if c.recent_denials.is_empty() {
            out.push_str("<p class=\"muted\">None.</p>\n");
        } else {
            out.push_str("<table class=\"denials\">\n");
            out.push_str("<tr><th>time</th><th>path</th><th>reason</th><th>detail</th><th>caller</th></tr>\n");
            for d in &c.recent_denials {
                let _ = writeln!(
                    out,
                    "<tr class=\"denial\"><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>pid {}, uid {}</td></tr>",
                    esc(&d.time),
                    esc(&d.path),
                    esc(&d.reason),
                    esc(&d.detail),
                    d.pid,
                    d.uid
                );
            }
            out.push_str("</table>\n");
        }
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "<footer>trustfs {} · as of {} · reloads every {RELOAD_SECS} s · <a href=\"/status.json\">status.json</a> · <a href=\"/badge.svg\">badge</a> · <a href=\"/metrics\">metrics</a></footer>\n</main></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&now.to_string()),
    );
    out
}

fn mono(s: &str) -> String {
    format!("<span class=\"mono\">{}</span>", esc(s))
}

/// The first 12 characters of a key id.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `altered 2, unregistered 1` (non-zero counts only), or `none`.
fn by_label(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(label, n)| format!("{} {n}", esc(label)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `in 3d` (amber within a day, red when past).
fn countdown(expires: &str, now: UtcTime) -> String {
    match seconds_until(expires, now) {
        Some(secs) if secs <= 0 => {
            format!("<span class=\"past\">expired {}</span>", in_words(secs))
        }
        Some(secs) if secs < 86400 => format!("<span class=\"soon\">{}</span>", in_words(secs)),
        Some(secs) => in_words(secs),
        None => "<span class=\"past\">no valid expiry</span>".into(),
    }
}

/// A badge for dashboards: `trustfs | ✔ verified` in green, or `trustfs | ✘ expired` in red.
pub fn badge(v: &Verdict) -> String {
    let (color, text) = if v.verified {
        (GREEN, "✔ verified".to_owned())
    } else {
        (RED, format!("✘ {}", state_word(v)))
    };
    // Widths for 11 px Verdana-like text: about 7 px a character plus padding.
    let left_w = 52u32;
    let right_w = 14 + 7 * text.chars().count() as u32;
    let w = left_w + right_w;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="trustfs: {text}" data-state="{state}"><title>trustfs: {text} — {mnt}</title><rect width="{left_w}" height="20" rx="3" fill="#555"/><rect x="{left_w}" width="{right_w}" height="20" rx="3" fill="{color}"/><rect x="{left_w}" width="4" height="20" fill="{color}"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="7" y="14">trustfs</text><text x="{tx}" y="14">{text}</text></g></svg>
"##,
        state = if v.verified {
            "verified"
        } else {
            "not-verified"
        },
        mnt = esc(&v.mountpoint),
        tx = left_w + 7,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::status::MountStatus;
    use crate::telemetry::DenialRecord;

    fn verdict(verified: bool, problems: &[&str]) -> Verdict {
        let mut status: MountStatus = crate::telemetry::metrics::tests::status();
        status.mountpoint = "/mnt/<b>bold</b>".into();
        status.counters.recent_denials = vec![DenialRecord {
            time: "2030-01-01T00:00:00Z".into(),
            path: "<script>alert(1)</script>".into(),
            reason: "unregistered".into(),
            detail: "not listed \"in\" the signed targets & co".into(),
            pid: 7,
            uid: 1000,
        }];
        Verdict {
            mountpoint: status.mountpoint.clone(),
            verified,
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
            status: Some(status),
        }
    }

    #[test]
    fn escapes_every_string_from_the_record() {
        let page = html(
            &verdict(false, &["<img src=x onerror=alert(2)>"]),
            UtcTime(0),
        );
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<b>bold"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;in&quot; the signed targets &amp; co"));
        assert_eq!(esc("a\u{1b}[31mb'"), "a\\u{1b}[31mb&#39;");
        assert_eq!(esc("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        // The only tags are the page's own.
        let tags: std::collections::BTreeSet<&str> = page
            .split('<')
            .skip(1)
            .map(|t| t.split([' ', '>', '\n']).next().unwrap())
            .collect();
        for t in &tags {
            assert!(
                [
                    "!doctype", "html", "head", "/head", "meta", "title", "style", "/style",
                    "/title", "body", "main", "header", "svg", "path", "/svg", "div", "h1", "/h1",
                    "p", "/p", "/div", "/header", "section", "h2", "/h2", "ul", "li", "/li", "/ul",
                    "/section", "table", "tr", "th", "/th", "td", "/td", "/tr", "/table", "span",
                    "/span", "code", "/code", "footer", "a", "/a", "/footer", "/main", "/body",
                    "/html"
                ]
                .contains(t),
                "unexpected tag {t:?}"
            );
        }
        let b = badge(&verdict(false, &["x"]));
        assert!(b.contains("/mnt/&lt;b&gt;bold"), "{b}");
    }

    #[test]
    fn green_when_verified_red_with_the_reason_otherwise() {
        let ok = html(&verdict(true, &[]), UtcTime(0));
        assert!(ok.contains("data-state=\"verified\""));
        assert!(ok.contains(&format!("fill=\"{GREEN}\"")));
        assert!(ok.contains("<h1>Verified</h1>"));
        assert!(!ok.contains("Problems"));
        let bad = html(
            &verdict(
                false,
                &["timestamp metadata expired at 2020-01-01T00:00:00Z"],
            ),
            UtcTime(0),
        );
        assert!(bad.contains("data-state=\"not-verified\""));
        assert!(bad.contains(&format!("fill=\"{RED}\"")));
        assert!(bad.contains("<li>timestamp metadata expired at 2020-01-01T00:00:00Z</li>"));
        assert!(bad.contains("<title>✘ trustfs"));
        assert!(badge(&verdict(false, &["targets metadata expired at x"])).contains("✘ expired"));
        assert!(badge(&verdict(
            false,
            &["daemon pid 3 is not running (stale mount)"]
        ))
        .contains("✘ down"));
        assert!(badge(&verdict(true, &[])).contains("✔ verified"));
        // Counts and the countdown are on the page.
        assert!(ok.contains("v4"), "{ok}");
        assert!(ok.contains("altered 1"));
        assert!(ok.contains("in 21915d"), "{ok}");
    }
}
