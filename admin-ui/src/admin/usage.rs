//! Usage per app: the "Usage" section of an app's page (visits and unique people per day
//! for 30 days as inline SVG bar charts with a table of the numbers, totals over 7 and 30
//! days, the last people who opened it) and the overview at `/.gatehouse/admin/usage`
//! (administrators: top apps by visits and by people over 7 or 30 days). The counts come
//! from the gateway (`AdminGate::app_usage`, `AdminGate::usage_by_app`); what a visit is
//! is the gateway's definition (a page load, not assets or API calls).

use super::*;

/// Visits and distinct signed-in people of one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageDayRow {
    /// Days since 1970-01-01 UTC.
    pub day: i64,
    pub visits: i64,
    pub people: i64,
}

/// One app's usage as its page shows it.
#[derive(Debug, Clone, Default)]
pub struct UsageReport {
    /// The last 30 UTC days, oldest first, today last; days without visits are zeros.
    pub days: Vec<UsageDayRow>,
    pub visits_7: i64,
    /// Distinct people over the 7 days (not a sum of days).
    pub people_7: i64,
    pub visits_30: i64,
    pub people_30: i64,
    /// The last people who opened it, latest first, with when (epoch seconds).
    pub last: Vec<(String, i64)>,
}

/// One app's usage over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub app: String,
    pub visits: i64,
    pub people: i64,
}

fn date(day: i64) -> String {
    chrono_like(day * 86_400)[..10].to_string()
}

/// A bar chart of `values` (one per day of `days`), `label` naming the measure. The SVG has
/// a title and a description with the total; each bar has a tooltip; the exact numbers are
/// in the table beside it.
fn chart(id: &str, label: &str, days: &[UsageDayRow], value: impl Fn(&UsageDayRow) -> i64) -> String {
    const W: i64 = 10;
    const GAP: i64 = 2;
    const H: i64 = 60;
    let max = days.iter().map(&value).max().unwrap_or(0).max(1);
    let total: i64 = days.iter().map(&value).sum();
    let bars: String = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v = value(d);
            // At least a hairline for a non-zero day, so it is not mistaken for none.
            let h = if v == 0 { 0 } else { (v * H / max).max(1) };
            format!(
                r#"<rect x="{x}" y="{y}" width="{W}" height="{h}"><title>{date}: {v} {label}</title></rect>"#,
                x = i as i64 * (W + GAP),
                y = H - h,
                date = date(d.day),
                label = esc(label),
            )
        })
        .collect();
    let width = days.len() as i64 * (W + GAP) - GAP;
    let (first, last) = match (days.first(), days.last()) {
        (Some(f), Some(l)) => (date(f.day), date(l.day)),
        _ => (String::new(), String::new()),
    };
    format!(
        r#"<figure class="usage-chart"><figcaption id="{id}-title">{Label} per day <span class="muted small">(most {max})</span></figcaption>
<svg role="img" aria-labelledby="{id}-t {id}-d" viewBox="0 -1 {width} {h1}" preserveAspectRatio="none" focusable="false"><title id="{id}-t">{Label} per day, last {n} days</title><desc id="{id}-d">{total} {label} from {first} to {last}; the most in one day: {max}.</desc><line class="axis" x1="0" y1="{H}" x2="{width}" y2="{H}"></line>{bars}</svg>
<div class="usage-axis muted small" aria-hidden="true"><span>{first}</span><span>{last}</span></div></figure>"#,
        Label = esc(&capitalised(label)),
        label = esc(label),
        n = days.len(),
        h1 = H + 2,
        max = if days.iter().map(&value).max().unwrap_or(0) == 0 {
            0
        } else {
            max
        },
    )
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The "Usage" section of an app's page.
pub(super) fn usage_section(report: &Result<UsageReport, AdminError>) -> String {
    let r = match report {
        Ok(r) => r,
        Err(e) => {
            return format!(
                r#"<section class="card wide-card" id="usage"><h2>Usage</h2><div class="alert error" role="alert">Usage is unavailable: {}</div></section>"#,
                esc(&format!("{e:?}"))
            )
        }
    };
    let last: String = if r.last.is_empty() {
        r#"<p class="muted">Nobody signed in has opened it yet.</p>"#.to_string()
    } else {
        let items: String = r
            .last
            .iter()
            .map(|(who, at)| {
                format!(
                    r#"<li><span class="person">{who}</span> <time class="muted small" datetime="{iso}">{t} UTC</time></li>"#,
                    who = esc(who),
                    iso = attr(&chrono_like(*at).replace(' ', "T")),
                    t = esc(&chrono_like(*at)),
                )
            })
            .collect();
        format!(r#"<ol class="usage-last" id="usage-last">{items}</ol>"#)
    };
    let rows: String = r
        .days
        .iter()
        .rev()
        .map(|d| {
            format!(
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                date(d.day),
                d.visits,
                d.people
            )
        })
        .collect();
    format!(
        r#"<section class="card wide-card" id="usage"><h2>Usage</h2>
<p class="muted small">A visit is a page load of the app by a browser (not its assets, API calls or WebSockets); people are distinct signed-in users. Days are UTC; counts arrive within a few seconds.</p>
<dl class="usage-totals">
<div><dt>Visits, 7 days</dt><dd id="usage-visits-7">{v7}</dd></div>
<div><dt>People, 7 days</dt><dd id="usage-people-7">{p7}</dd></div>
<div><dt>Visits, 30 days</dt><dd id="usage-visits-30">{v30}</dd></div>
<div><dt>People, 30 days</dt><dd id="usage-people-30">{p30}</dd></div>
</dl>
<div class="usage-charts">{visits}{people}</div>
<details class="usage-table"><summary>Numbers per day</summary><div class="table-wrap"><table><thead><tr><th>Day (UTC)</th><th class="num">Visits</th><th class="num">People</th></tr></thead><tbody>{rows}</tbody></table></div></details>
<h3>Last opened by</h3>{last}</section>"#,
        v7 = r.visits_7,
        p7 = r.people_7,
        v30 = r.visits_30,
        p30 = r.people_30,
        visits = chart("usage-visits", "visits", &r.days, |d| d.visits),
        people = chart("usage-people", "people", &r.days, |d| d.people),
    )
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct UsageQuery {
    days: Option<String>,
}

/// `/.gatehouse/admin/usage`: top apps by visits and by people (administrators).
pub(super) async fn usage_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(q): Query<UsageQuery>,
) -> Response {
    let v = match admin(&gate, &info(i), "/.gatehouse/admin/usage") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let days: i64 = match q.days.as_deref() {
        None | Some("7") => 7,
        Some("30") => 30,
        Some(_) => {
            return crate::error(
                &gate,
                StatusCode::BAD_REQUEST,
                "Unknown period",
                "days must be 7 or 30.",
            )
        }
    };
    let names: std::collections::HashMap<String, String> =
        gate.admin_apps().into_iter().map(|a| (a.slug, a.name)).collect();
    let rows = match gate.usage_by_app(days).await {
        Ok(r) => r,
        Err(e) => {
            return crate::error(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "Usage is unavailable",
                &format!("The store did not answer ({e:?}). Try again in a minute."),
            )
        }
    };
    let table = |id: &str, caption: &str, mut rows: Vec<UsageRow>, by_people: bool| {
        rows.sort_by(|a, b| {
            let key = |r: &UsageRow| {
                if by_people {
                    (r.people, r.visits)
                } else {
                    (r.visits, r.people)
                }
            };
            key(b).cmp(&key(a)).then_with(|| a.app.cmp(&b.app))
        });
        let body: String = rows
            .iter()
            .take(20)
            .enumerate()
            .map(|(n, r)| {
                let name = names.get(&r.app).map_or(r.app.as_str(), String::as_str);
                let app = if names.contains_key(&r.app) {
                    format!(
                        r#"<a href="/.gatehouse/admin/apps/{slug}#usage">{name}</a>"#,
                        slug = attr(&r.app),
                        name = esc(name)
                    )
                } else {
                    format!(r#"{} <span class="muted small">(removed)</span>"#, esc(&r.app))
                };
                format!(
                    r#"<tr data-app="{slug}"><td class="num">{rank}</td><td>{app}<div class="muted small">{slug_text}</div></td><td class="num">{visits}</td><td class="num">{people}</td></tr>"#,
                    slug = attr(&r.app),
                    slug_text = esc(&r.app),
                    rank = n + 1,
                    visits = r.visits,
                    people = r.people,
                )
            })
            .collect();
        let body = if body.is_empty() {
            r#"<tr><td colspan="4" class="muted">No visits in this period.</td></tr>"#.to_string()
        } else {
            body
        };
        format!(
            r#"<section class="card wide-card"><h2>{caption}</h2><div class="table-wrap"><table id="{id}"><thead><tr><th class="num">#</th><th>App</th><th class="num">Visits</th><th class="num">People</th></tr></thead><tbody>{body}</tbody></table></div></section>"#
        )
    };
    let period = |d: i64| {
        let current = if d == days { r#" aria-current="page""# } else { "" };
        format!(
            r#"<a class="button secondary small-button" href="/.gatehouse/admin/usage?days={d}"{current}>{d} days</a>"#
        )
    };
    let body = format!(
        r#"<div class="admin-head"><h1>Usage</h1><nav class="usage-period" aria-label="Period">{p7}{p30}</nav></div>
<p class="muted">Page loads of each app by browsers over the last {days} UTC days (today included), and the distinct signed-in people behind them. Each app's page shows its days and who opened it last.</p>
<div class="usage-tops">{by_visits}{by_people}</div>"#,
        p7 = period(7),
        p30 = period(30),
        by_visits = table("top-visits", "Top apps by visits", rows.clone(), false),
        by_people = table("top-people", "Top apps by people", rows, true),
    );
    page(&gate, &v, "Usage", "usage", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_bar_per_day_and_text_for_screen_readers() {
        let days: Vec<UsageDayRow> = (0..30)
            .map(|i| UsageDayRow {
                day: 20_000 + i,
                visits: i % 3,
                people: 1,
            })
            .collect();
        let svg = chart("v", "visits", &days, |d| d.visits);
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains("<title id=\"v-t\">Visits per day, last 30 days</title>"));
        assert!(svg.contains("30 visits from 2024-10-04 to 2024-11-02"), "{svg}");
        assert!(
            svg.contains(r#"height="60"><title>2024-10-06: 2 visits</title>"#),
            "{svg}"
        );
        let none = chart("p", "people", &[UsageDayRow::default()], |d| d.people);
        assert!(none.contains("0 people"));
    }
}
