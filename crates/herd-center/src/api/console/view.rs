//! The console's page frame and the small pieces every page uses: the layout with its
//! navigation, times as people read them, action badges, and the SVG bar chart. Everything is
//! written with maud, which escapes every spliced value: no page can put a terminal's, a
//! threat's or a file's name into the HTML as markup.

use maud::{DOCTYPE, Markup, html};

use crate::sessions::{ConsoleRole, SignedIn};

/// Which part of the console a page belongs to (its navigation entry is marked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Overview,
    Terminals,
    Exposed,
    Coverage,
    Groups,
    Sites,
    Rollouts,
    Samples,
    Signatures,
    Faults,
    Alerts,
    Live,
}

/// Whether the console is a center's or a site server's (which shows its own terminals and its
/// link to the center, and edits nothing the center owns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Center,
    Site,
}

/// A whole page: head, navigation, the signed-in user and sign-out, and `body`.
pub fn page(
    title: &str,
    tier: Tier,
    user: Option<&SignedIn>,
    section: Option<Section>,
    body: Markup,
) -> Markup {
    let nav: &[(Section, &str, &str)] = &[
        (Section::Overview, "/console/", "Overview"),
        (Section::Terminals, "/console/terminals", "Terminals"),
        (Section::Exposed, "/console/exposed", "Exposed"),
        (Section::Coverage, "/console/coverage", "Coverage"),
        (Section::Groups, "/console/groups", "Groups & rules"),
        (
            Section::Sites,
            "/console/sites",
            match tier {
                Tier::Center => "Sites",
                Tier::Site => "This site",
            },
        ),
        (Section::Rollouts, "/console/rollouts", "Rollouts"),
        (Section::Samples, "/console/samples", "Samples"),
        (Section::Signatures, "/console/signatures", "Herd's set"),
        (Section::Faults, "/console/faults", "Faults"),
        (Section::Alerts, "/console/alerts", "Alerts & messages"),
        (Section::Live, "/console/live", "Live"),
    ];
    // A site's console shows its own terminals, distribution and queue; rollouts, samples,
    // faults and alerts are the center's.
    let center_only = [
        Section::Rollouts,
        Section::Samples,
        Section::Signatures,
        Section::Faults,
        Section::Alerts,
    ];
    let nav = nav
        .iter()
        .filter(|(entry, _, _)| tier == Tier::Center || !center_only.contains(entry));
    let product = match tier {
        Tier::Center => "Herd center",
        Tier::Site => "Herd site",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (product) }
                link rel="stylesheet" href="/console/static/console.css";
                // No icon to fetch (the browser would ask the API's /favicon.ico).
                link rel="icon" href="data:,";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { (product) }
                    @if let Some(user) = user {
                        nav aria-label="Sections" {
                            ul {
                                @for (entry, href, label) in nav {
                                    li {
                                        @if section == Some(*entry) {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (user.label) " " }
                            span.role { (user.role.as_str()) }
                            form method="post" action="/console/logout" {
                                (csrf_field(user))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(user: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// Whether the user may change things (the pages show actions only to those who may).
pub fn may_act(user: &SignedIn) -> bool {
    user.role >= ConsoleRole::Operator
}

/// Whether the user may judge samples (analysts and operators).
pub fn may_judge(user: &SignedIn) -> bool {
    user.role >= ConsoleRole::Analyst
}

/// A notice or an error after an action, announced to screen readers.
pub fn outcome(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
    }
}

/// A plan action as a coloured badge (text first: colour is never the only signal).
pub fn action_badge(action: Option<&str>) -> Markup {
    let (class, text) = match action {
        Some("none") => ("ok", "protected"),
        Some("update") => ("update", "update"),
        Some("switch") => ("switch", "switch"),
        Some("exposed") => ("bad", "exposed"),
        Some(other) => ("", other),
        None => ("muted", "not planned yet"),
    };
    html! { span class={"badge " (class)} { (text) } }
}

/// "3 min ago" for an RFC 3339 time, with the exact time in the tooltip.
pub fn ago(rfc3339: Option<&str>, now: i64) -> Markup {
    let Some(text) = rfc3339 else {
        return html! { span.muted { "never" } };
    };
    let words = herd_core::Timestamp::parse(text)
        .ok()
        .map(|at| words_since(now - at.unix_seconds()))
        .unwrap_or_else(|| text.to_owned());
    html! { time datetime=(text) title=(text) { (words) } }
}

/// Seconds as people say them: "just now", "4 min ago", "3 h ago", "2 days ago".
pub fn words_since(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "in the future".to_owned(),
        s if s < 60 => "just now".to_owned(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// One bar of a chart: its label, its stacked parts (CSS class, value), and a tooltip.
pub struct Bar {
    pub label: String,
    pub parts: Vec<(&'static str, u64)>,
    pub title: String,
}

/// A stacked bar chart as inline SVG (no script), with a text table beside it for screen
/// readers and for copying numbers.
pub fn bar_chart(
    caption: &str,
    bars: &[Bar],
    legend: &[(&'static str, &str)],
    bar_width: usize,
) -> Markup {
    const HEIGHT: u64 = 120;
    let width_of_bar = bar_width;
    let peak = bars
        .iter()
        .map(|bar| bar.parts.iter().map(|(_, v)| v).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let width = bars.len().max(1) * (width_of_bar + 4);
    html! {
        figure.chart {
            figcaption { (caption) }
            svg role="img" aria-label=(caption) width=(width) height=(HEIGHT + 20)
                viewBox={"0 0 " (width) " " (HEIGHT + 20)} {
                @for (i, bar) in bars.iter().enumerate() {
                    g {
                        title { (bar.title) }
                        @let mut top = HEIGHT;
                        @for (class, value) in &bar.parts {
                            @let h = value * HEIGHT / peak;
                            @if h > 0 {
                                rect class=(class) x=(i * (width_of_bar + 4)) y=(top - h)
                                    width=(width_of_bar) height=(h) {}
                            }
                            @let _ = { top -= h; };
                        }
                        text x=(i * (width_of_bar + 4) + width_of_bar / 2) y=(HEIGHT + 14) text-anchor="middle" {
                            (bar.label)
                        }
                    }
                }
            }
            p.legend {
                @for (class, text) in legend {
                    span { span class={"swatch " (class)} {} " " (text) " " }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(words_since(5), "just now");
        assert_eq!(words_since(300), "5 min ago");
        assert_eq!(words_since(7200), "2 h ago");
        assert_eq!(words_since(3 * 86_400), "3 days ago");
        assert_eq!(words_since(-5), "in the future");
    }

    #[test]
    fn untrusted_text_is_escaped_everywhere_it_is_spliced() {
        let user = SignedIn {
            hash: String::new(),
            label: "<script>alert(1)</script>".into(),
            role: ConsoleRole::Operator,
            csrf: "\"><img src=x onerror=alert(1)>".into(),
        };
        let bars = [Bar {
            label: "<b>".into(),
            parts: vec![("ok", 3)],
            title: "</title><script>".into(),
        }];
        let html = page(
            "<i>title</i>",
            Tier::Center,
            Some(&user),
            Some(Section::Overview),
            bar_chart("<u>", &bars, &[("ok", "<em>")], 18),
        )
        .into_string();
        for raw in [
            "<script>alert",
            "<img src=x",
            "<i>title",
            "<b>",
            "<u>",
            "<em>",
            "</title><script>",
        ] {
            assert!(
                !html.contains(raw),
                "{raw} is in the page unescaped:\n{html}"
            );
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
