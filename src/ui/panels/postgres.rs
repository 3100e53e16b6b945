//! PostgreSQL: used / usable connections with a gauge and its history, waiting on locks, errors,
//! connections by state; one row per configured pool (`application_name` connections against
//! size + max overflow, 100% = crit), other application names seen, and operator gauges with
//! their thresholds; one row per PgBouncer pool seen (`[[pgbouncer]]`: clients active and
//! waiting, server connections, the longest wait), coloured by the bouncer's thresholds.
//! Above the server's rows, one row per pool an application reports through a
//! `[[prometheus]]` source (`prom.<name>.pool.<pool>.*`): what the application sees, waiting
//! requests included; dimmed with `◌` and its age while that source is down.
//!
//! ```text
//! ✔ up  probe 1.8ms  postgres://app:***@127.0.0.1:5432/tasks
//! ✖ app pool tasks  30/30 used · 17 waiting
//! ✔ connections   34/97 ████▍░░░░░  35% ▁▁▂▂▃
//! waiting 2 · errors 3 │ active 12 · idle 20
//! ▲ task-tracker  28/30 █████████▍  93% ▅▆▇▇█
//! ✖ bouncer tasks/app  cl 12 act · 17 wait  sv 10/10  maxwait 3.2s
//! ▲ retry_queue      14 warn 10          ▁▃▆█
//! other apps: reporting 3 · unnamed 1
//! ```

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::config::PostgresConfig;
use crate::metrics::Level;
use crate::redact;
use crate::sources::SourceId;
use crate::state::Panel;
use crate::theme::Theme;
use crate::ui::format;
use crate::ui::layout;
use crate::ui::widgets::badge;
use crate::ui::widgets::columns::{self, Column};
use crate::ui::widgets::gauge;
use crate::ui::widgets::spark::Spark;
use crate::ui::widgets::stale;
use crate::ui::widgets::text::{Part, put_parts};

use super::{Kpi, PanelCtx, frame_panel, headline, more, not_configured, row};

const NAME_MIN: u16 = 11;
const NAME_MAX: u16 = 24;
const BAR_WIDTH: u16 = 10;
/// Keys under `pg.connections.` that are not connection states.
const NOT_STATES: [&str; 3] = ["used", "max", "utilization"];

/// One line of the panel; charts may grow taller.
enum Line {
    /// An application's own pool: the `[[prometheus]]` source's name and the pool's key part.
    AppPool(String, String),
    Connections,
    States,
    Pool(usize),
    Bouncer(BouncerPool),
    Gauge(usize),
    OtherApps,
}

impl Line {
    fn has_chart(&self) -> bool {
        matches!(self, Line::Connections | Line::Pool(_) | Line::Gauge(_))
    }
}

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Postgres);
    let buf = frame.buffer_mut();
    let Some(config) = ctx.state.config.postgres.as_ref() else {
        not_configured(buf, inner, ctx, "[postgres]");
        return;
    };
    let theme = ctx.theme;
    let health = ctx.health(SourceId::POSTGRES, true);
    let stale = health.is_stale();
    let used = ctx.metric("pg.connections.used", stale);
    let max = ctx.metric("pg.connections.max", stale);
    let worst_pool = config
        .pools
        .iter()
        .map(|p| pool_utilization(ctx, &p.application_name, stale, p.capacity()))
        .fold(None, |acc: Option<f64>, u| match (acc, u) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        });
    let body = headline(
        buf,
        inner,
        ctx,
        &[
            Kpi {
                label: format!("connections of {}", format::or_dash(max, format::count)),
                value: format::or_dash(used, format::count),
                style: ctx.value_style("pg.connections.utilization", stale),
            },
            Kpi {
                label: "fullest pool".into(),
                value: format::or_dash(worst_pool, format::percent),
                style: if stale {
                    theme.stale()
                } else {
                    theme.value(
                        config
                            .pools
                            .iter()
                            .map(|p| ctx.level(&pool_key(&p.application_name, "utilization")))
                            .max()
                            .unwrap_or_default(),
                    )
                },
            },
            Kpi {
                label: "waiting on locks".into(),
                value: format::or_dash(ctx.metric("pg.waiting", stale), format::count),
                style: if stale { theme.stale() } else { theme.text() },
            },
        ],
    );

    let plain = if stale { theme.stale() } else { theme.text() };
    let probe = Part::new(vec![
        Span::styled("  probe ", theme.muted()),
        Span::styled(
            format::or_dash(ctx.metric("pg.probe_ms", stale), format::millis),
            plain,
        ),
    ]);
    let status_rows = badge::status_line(
        buf,
        body,
        &health,
        vec![probe],
        &redact::url(&config.url),
        layout::reason_rows(body),
        theme,
    );

    let mut lines: Vec<Line> = app_pools(ctx)
        .into_iter()
        .map(|(source, pool)| Line::AppPool(source, pool))
        .collect();
    lines.extend([Line::Connections, Line::States]);
    lines.extend((0..config.pools.len()).map(Line::Pool));
    lines.extend(bouncer_pools(ctx).into_iter().map(Line::Bouncer));
    lines.extend((0..config.gauges.len()).map(Line::Gauge));
    if !other_apps(ctx, config).is_empty() {
        lines.push(Line::OtherApps);
    }
    let list = super::below(body, status_rows);
    let heights = plan_heights(
        &lines,
        list.height,
        layout::max_chart_rows(list, ctx.zoomed),
    );
    let name_width = config
        .pools
        .iter()
        .map(|p| p.application_name.chars().count())
        .chain(config.gauges.iter().map(|g| g.name.chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(NAME_MIN as usize, NAME_MAX as usize) as u16;
    let cols = [
        Column::left("", 1, 0),
        Column::left("", name_width, 0),
        Column::right("", 9, 0),
        Column::left("", BAR_WIDTH, 2),
        Column::right("", 4, 1),
    ];
    let kept = columns::fit(&cols, list.width, super::MIN_CHART_WIDTH);
    let chart_width = list.width.saturating_sub(columns::used_width(&cols, &kept));
    let rows = Rows {
        ctx,
        config,
        cols: &cols,
        kept: &kept,
        stale,
        window_ms: layout::chart_window_ms(chart_width),
    };
    let mut y = list.y;
    for (line, height) in lines.iter().zip(&heights) {
        let area = Rect::new(list.x, y, list.width, *height);
        rows.draw(buf, area, line);
        y += height;
    }
    let hidden = lines.len() - heights.len();
    more(buf, row(list, list.height.saturating_sub(1)), hidden, ctx);
}

/// One row per line, then spare rows to the charts (up to `max_rows` each). When the lines do
/// not fit, the last row is kept for "… N more".
fn plan_heights(lines: &[Line], available: u16, max_rows: u16) -> Vec<u16> {
    let available = available as usize;
    if lines.len() > available {
        return vec![1; available.saturating_sub(1)];
    }
    let mut heights = vec![1u16; lines.len()];
    let mut spare = available - lines.len();
    let growable: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].has_chart()).collect();
    while spare > 0 {
        let mut grew = false;
        for &i in &growable {
            if spare > 0 && heights[i] < max_rows {
                heights[i] += 1;
                spare -= 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    heights
}

/// Pools the `[[prometheus]]` sources have reported, by source and pool, in config order.
fn app_pools(ctx: &PanelCtx<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &ctx.state.config.prometheus {
        let prefix = format!("{}pool.", SourceId::prometheus(&p.name).key_prefix());
        let mut pools: Vec<String> = ctx
            .state
            .metrics
            .keys_with_prefix(&prefix)
            .filter_map(|key| Some(key.strip_prefix(&prefix)?.rsplit_once('.')?.0.to_string()))
            .collect();
        pools.dedup();
        out.extend(pools.into_iter().map(|pool| (p.name.clone(), pool)));
    }
    out
}

fn pool_key(application_name: &str, field: &str) -> String {
    format!("pg.app.{application_name}.{field}")
}

fn pool_utilization(ctx: &PanelCtx<'_>, name: &str, stale: bool, capacity: u32) -> Option<f64> {
    ctx.metric(&pool_key(name, "utilization"), stale)
        .or_else(|| {
            ctx.metric(&pool_key(name, "connections"), stale)
                .map(|c| c / f64::from(capacity.max(1)))
        })
}

/// Application names seen that are not configured pools, with their connections.
fn other_apps(ctx: &PanelCtx<'_>, config: &PostgresConfig) -> Vec<(String, f64)> {
    ctx.state
        .metrics
        .keys_with_prefix("pg.app.")
        .filter_map(|key| {
            let name = key.strip_prefix("pg.app.")?.strip_suffix(".connections")?;
            if config.pools.iter().any(|p| p.application_name == name) {
                return None;
            }
            Some((name.to_string(), ctx.state.metrics.get(key)?.last_known()?))
        })
        .collect()
}

/// A PgBouncer pool seen in the metrics: its `[[pgbouncer]]` and the key segments of its
/// database and user.
struct BouncerPool {
    bouncer: usize,
    database: String,
    user: String,
}

impl BouncerPool {
    fn key(&self, ctx: &PanelCtx<'_>, field: &str) -> String {
        format!(
            "pgbouncer.{}.{}.{}.{field}",
            ctx.state.config.pgbouncers[self.bouncer].name, self.database, self.user
        )
    }
}

/// Every pool of every configured bouncer that has reported, in key order.
fn bouncer_pools(ctx: &PanelCtx<'_>) -> Vec<BouncerPool> {
    let mut out = Vec::new();
    for (bouncer, b) in ctx.state.config.pgbouncers.iter().enumerate() {
        let prefix = format!("pgbouncer.{}.", b.name);
        for key in ctx.state.metrics.keys_with_prefix(&prefix) {
            let rest = &key[prefix.len()..];
            if let [database, user, "cl_active"] = rest.split('.').collect::<Vec<_>>()[..] {
                out.push(BouncerPool {
                    bouncer,
                    database: database.to_string(),
                    user: user.to_string(),
                });
            }
        }
    }
    out
}

/// What every line of the panel is drawn with.
struct Rows<'a> {
    ctx: &'a PanelCtx<'a>,
    config: &'a PostgresConfig,
    cols: &'a [Column],
    kept: &'a [usize],
    stale: bool,
    window_ms: u64,
}

impl Rows<'_> {
    /// The chart of `key` in `area`; while stale, the age of its last value on the first row
    /// and the (dimmed) chart below it, if there is room.
    fn chart(&self, buf: &mut Buffer, area: Rect, key: &str, series_index: usize, percent: bool) {
        let ctx = self.ctx;
        let mut area = area;
        if self.stale {
            let age = stale::age_ms(ctx.state, key, SourceId::POSTGRES);
            let rows = stale::put_age(buf, area, age, ctx.theme);
            if area.height <= 1 {
                return;
            }
            area = super::below(area, rows);
        }
        let spark = Spark::new(ctx.series(key), ctx.state.now_ms, self.window_ms)
            .fault_spans(&ctx.state.faults.spans)
            .threshold(ctx.threshold(key))
            .stale(self.stale)
            .color(ctx.theme.series(series_index));
        let spark = if percent {
            spark.scale_max(1.0).axis(format::percent)
        } else {
            spark.axis(format::count)
        };
        spark.render(buf, area, ctx.theme);
    }

    /// The level badge of `key`, or the stale marker.
    fn badge(&self, key: &str) -> Span<'static> {
        if self.stale {
            stale::marker(self.ctx.theme)
        } else {
            self.ctx.level_badge(key, false)
        }
    }

    /// `✖ bouncer tasks/app  cl 12 act · 17 wait  sv 10/10  maxwait 3.2s`: levels by the
    /// bouncer's waiting and maxwait thresholds; dimmed, marked and aged while it is down.
    fn bouncer(&self, buf: &mut Buffer, row: Rect, pool: &BouncerPool) {
        let ctx = self.ctx;
        let theme = ctx.theme;
        let bouncers = &ctx.state.config.pgbouncers;
        let b = &bouncers[pool.bouncer];
        let source = crate::sources::pgbouncer::source_id(&b.name);
        let stale = ctx.health(source.as_str(), true).is_stale();
        let value = |field: &str| ctx.metric(&pool.key(ctx, field), stale);
        let waiting = value("cl_waiting");
        let maxwait = value("maxwait");
        let waiting_t = crate::metrics::Threshold::above(b.waiting_warn, b.waiting_crit);
        let secs = |d: Option<crate::toml_input::Dur>| d.map(|d| d.get().as_secs_f64());
        let maxwait_t =
            crate::metrics::Threshold::above(secs(b.maxwait_warn), secs(b.maxwait_crit));
        let level_of = |t: &crate::metrics::Threshold, v: Option<f64>| {
            v.filter(|_| t.is_set())
                .map(|v| t.level(v))
                .unwrap_or_default()
        };
        let waiting_level = level_of(&waiting_t, waiting);
        let maxwait_level = level_of(&maxwait_t, maxwait);
        let style = |level: Level| {
            if stale {
                theme.stale()
            } else {
                theme.value(level)
            }
        };
        let plain = if stale { theme.stale() } else { theme.text() };
        let badge = if stale {
            stale::marker(theme)
        } else if (waiting_t.is_set() || maxwait_t.is_set()) && waiting.is_some() {
            badge::level(waiting_level.max(maxwait_level), theme)
        } else {
            Span::raw(" ")
        };
        let count = |v: Option<f64>| format::or_dash(v, format::count);
        let name = if bouncers.len() > 1 {
            format!("{} {}/{}", b.name, pool.database, pool.user)
        } else {
            format!("{}/{}", pool.database, pool.user)
        };
        let active = count(value("cl_active"));
        let servers = match (value("sv_active"), value("sv_idle"), value("sv_used")) {
            (Some(active), idle, used) => format!(
                "{}/{}",
                format::count(active),
                format::count(active + idle.unwrap_or(0.0) + used.unwrap_or(0.0))
            ),
            _ => format::NONE.to_string(),
        };
        let wait_text = format::or_dash(maxwait, |v| format!("{v:.1}s"));
        let mut parts = vec![
            Part::new(vec![badge, Span::raw(" ")]),
            Part::new(vec![
                Span::styled("bouncer ", theme.muted()),
                Span::styled(name.clone(), plain),
            ])
            .or(vec![
                Span::styled("pgb ", theme.muted()),
                Span::styled(name, plain),
            ]),
            Part::new(vec![
                Span::styled("  cl ", theme.muted()),
                Span::styled(active.clone(), plain),
                Span::styled(" act · ", theme.muted()),
                Span::styled(count(waiting), style(waiting_level)),
                Span::styled(" wait", theme.muted()),
            ])
            .or(vec![
                Span::styled("  cl ", theme.muted()),
                Span::styled(active, plain),
                Span::styled(" · ", theme.muted()),
                Span::styled(count(waiting), style(waiting_level)),
                Span::styled(" wait", theme.muted()),
            ]),
            Part::new(vec![
                Span::styled("  sv ", theme.muted()),
                Span::styled(servers, plain),
            ])
            .drop(2),
            Part::new(vec![
                Span::styled("  maxwait ", theme.muted()),
                Span::styled(wait_text.clone(), style(maxwait_level)),
            ])
            .or(vec![
                Span::styled("  mw ", theme.muted()),
                Span::styled(wait_text, style(maxwait_level)),
            ]),
        ];
        if stale {
            let age = stale::age_ms(ctx.state, &pool.key(ctx, "cl_active"), source.as_str());
            parts.push(
                Part::new(vec![Span::styled(
                    format!("  {}", stale::age_text(age, 16)),
                    theme.stale(),
                )])
                .or(vec![Span::styled(
                    format!("  {}", stale::age_text(age, 8)),
                    theme.stale(),
                )])
                .drop(1),
            );
        }
        put_parts(buf, row, &parts);
    }

    /// `✖ app pool tasks  30/30 used · 17 waiting`: full or waiting is critical, 80% a warning.
    fn app_pool(&self, buf: &mut Buffer, row: Rect, source: &str, pool: &str) {
        let ctx = self.ctx;
        let theme = ctx.theme;
        let id = SourceId::prometheus(source);
        let stale = ctx.health(id.as_str(), true).is_stale();
        let key = |field: &str| format!("{}pool.{pool}.{field}", id.key_prefix());
        let value = |field: &str| ctx.metric(&key(field), stale);
        let (in_use, max, waiting, idle) = (
            value("in_use"),
            value("max"),
            value("waiting"),
            value("idle"),
        );
        let share = match (in_use, max) {
            (Some(used), Some(max)) if max > 0.0 => Some(used / max),
            _ => None,
        };
        let level = if waiting.is_some_and(|w| w > 0.0) || share.is_some_and(|s| s >= 1.0) {
            Level::Crit
        } else if share.is_some_and(|s| s >= 0.8) {
            Level::Warn
        } else {
            Level::Ok
        };
        let (badge, style) = if stale {
            (stale::marker(theme), theme.stale())
        } else if in_use.is_none() {
            (Span::raw(" "), theme.text())
        } else {
            (badge::level(level, theme), theme.value(level))
        };
        let plain = if stale { theme.stale() } else { theme.text() };
        let used = format!(
            "{}/{}",
            format::or_dash(in_use, format::count),
            format::or_dash(max, format::count)
        );
        // One source: "app pool tasks"; several: "<source> pool tasks".
        let owner = if ctx.state.config.prometheus.len() == 1 {
            "app"
        } else {
            source
        };
        let mut parts = vec![
            Part::new(vec![badge, Span::raw(" ")]),
            Part::new(vec![Span::styled(format!("{owner} pool {pool}  "), plain)])
                .or(vec![Span::styled(format!("pool {pool} "), plain)]),
            Part::new(vec![
                Span::styled(used.clone(), style),
                Span::styled(" used", theme.muted()),
            ])
            .or(vec![Span::styled(used, style)]),
        ];
        if let Some(waiting) = waiting {
            let waiting_style = if stale {
                theme.stale()
            } else if waiting > 0.0 {
                theme.level(Level::Crit)
            } else {
                plain
            };
            parts.push(
                Part::new(vec![
                    Span::styled(" · ", theme.muted()),
                    Span::styled(format::count(waiting), waiting_style),
                    Span::styled(" waiting", theme.muted()),
                ])
                .or(vec![
                    Span::styled(" · ", theme.muted()),
                    Span::styled(format::count(waiting), waiting_style),
                    Span::styled(" wait", theme.muted()),
                ])
                .drop(1),
            );
        }
        if let Some(idle) = idle {
            parts.push(
                Part::new(vec![
                    Span::styled(" · ", theme.muted()),
                    Span::styled(format::count(idle), plain),
                    Span::styled(" idle", theme.muted()),
                ])
                .drop(3),
            );
        }
        if stale {
            let age = stale::age_ms(ctx.state, &key("in_use"), id.as_str());
            parts.push(
                Part::new(vec![Span::styled(
                    format!("  {}", stale::age_text(age, 8)),
                    theme.stale(),
                )])
                .drop(2),
            );
        }
        put_parts(buf, row, &parts);
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, line: &Line) {
        let Rows {
            ctx,
            config,
            cols,
            kept,
            stale,
            ..
        } = *self;
        let theme = ctx.theme;
        let first = Rect::new(area.x, area.y, area.width, 1);
        let value_style = |key: &str| ctx.value_style(key, stale);
        let plain = if stale { theme.stale() } else { theme.text() };
        match line {
            Line::AppPool(source, pool) => self.app_pool(buf, first, source, pool),
            Line::Connections => {
                let key = "pg.connections.utilization";
                let used = ctx.metric("pg.connections.used", stale);
                let max = ctx.metric("pg.connections.max", stale);
                let share = ctx
                    .metric(key, stale)
                    .or_else(|| Some(used? / max?.max(1.0)));
                let mut cells = usage_cells(
                    self.badge(key),
                    "connections",
                    used,
                    max,
                    share,
                    value_style(key),
                    theme,
                );
                cells[1] = vec![Span::styled("connections", plain)];
                let x = columns::draw_row(buf, first, cols, kept, &cells);
                self.chart(buf, chart_area(area, x), key, 0, true);
            }
            Line::States => {
                let mut parts = Vec::new();
                for (label, short, key) in [
                    ("waiting", "wait", "pg.waiting"),
                    ("errors", "err", "pg.errors"),
                ] {
                    let value = ctx.metric(key, stale);
                    let style = match value {
                        Some(v) if v > 0.0 && !stale => theme.level(Level::Warn),
                        _ => plain,
                    };
                    let sep = if parts.is_empty() { "" } else { " · " };
                    let number = format::or_dash(value, format::count);
                    parts.push(
                        Part::new(vec![
                            Span::styled(format!("{sep}{label} "), theme.muted()),
                            Span::styled(number.clone(), style),
                        ])
                        .or(vec![
                            Span::styled(format!("{sep}{short} "), theme.muted()),
                            Span::styled(number, style),
                        ]),
                    );
                }
                let states: Vec<(String, f64)> = ctx
                    .state
                    .metrics
                    .keys_with_prefix("pg.connections.")
                    .filter_map(|key| {
                        let state = key.strip_prefix("pg.connections.")?;
                        if NOT_STATES.contains(&state) {
                            return None;
                        }
                        Some((state.to_string(), ctx.metric(key, stale)?))
                    })
                    .collect();
                for (i, (state, value)) in states.into_iter().enumerate() {
                    let sep = if i == 0 { " │ " } else { " · " };
                    let number = format::count(value);
                    let mut part: Option<Part<'_>> = None;
                    for label in state_labels(&state) {
                        let spans = vec![
                            Span::styled(format!("{sep}{label} "), theme.muted()),
                            Span::styled(number.clone(), plain),
                        ];
                        part = Some(match part {
                            None => Part::new(spans),
                            Some(p) => p.or(spans),
                        });
                    }
                    parts.extend(part.map(|p| p.drop(1)));
                }
                put_parts(buf, first, &parts);
            }
            Line::Pool(i) => {
                let pool = &config.pools[*i];
                let name = &pool.application_name;
                let key = pool_key(name, "utilization");
                let capacity = f64::from(pool.capacity());
                let connections = ctx.metric(&pool_key(name, "connections"), stale);
                let share = pool_utilization(ctx, name, stale, pool.capacity());
                let mut cells = usage_cells(
                    self.badge(&key),
                    name,
                    connections,
                    Some(capacity),
                    share,
                    value_style(&key),
                    theme,
                );
                cells[1] = vec![Span::styled(name.clone(), plain)];
                let x = columns::draw_row(buf, first, cols, kept, &cells);
                self.chart(buf, chart_area(area, x), &key, 1 + i, true);
            }
            Line::Bouncer(pool) => self.bouncer(buf, first, pool),
            Line::Gauge(i) => {
                let g = &config.gauges[*i];
                let key = format!("pg.gauge.{}", g.name);
                // The limits take the bar's and the percentage's columns; labels shorten
                // before a number is cut.
                let mut limits_width = cols[3].width + cols[4].width + columns::GAP;
                let whole = limits_text(g.warn, g.crit, u16::MAX).chars().count() as u16;
                // A wide row gives the limits what they need before the chart takes the rest.
                if whole > limits_width
                    && columns::used_width(cols, kept) + whole + 2 * super::MIN_CHART_WIDTH
                        <= first.width
                {
                    limits_width = whole;
                }
                let limits = limits_text(g.warn, g.crit, limits_width);
                let cells = vec![
                    vec![self.badge(&key)],
                    vec![Span::styled(g.name.clone(), plain)],
                    vec![Span::styled(
                        format::or_dash(ctx.metric(&key, stale), format::count),
                        value_style(&key),
                    )],
                    vec![Span::styled(limits, theme.muted())],
                ];
                let gauge_cols = [cols[0], cols[1], cols[2], Column::left("", limits_width, 2)];
                let gauge_kept: Vec<usize> = kept.iter().copied().filter(|i| *i < 4).collect();
                let x = columns::draw_row(buf, first, &gauge_cols, &gauge_kept, &cells);
                self.chart(buf, chart_area(area, x), &key, 2 + i, false);
            }
            Line::OtherApps => {
                let mut parts = vec![
                    Part::new(vec![Span::styled("other apps:", theme.muted())])
                        .or(vec![Span::styled("others:", theme.muted())]),
                ];
                for (i, (name, value)) in other_apps(ctx, config).into_iter().enumerate() {
                    let sep = if i > 0 { " · " } else { " " };
                    parts.push(
                        Part::new(vec![
                            Span::styled(format!("{sep}{name} "), plain),
                            Span::styled(format::count(value), plain),
                        ])
                        .drop(1),
                    );
                }
                put_parts(buf, first, &parts);
            }
        }
    }
}

/// A connection state as the panel writes it, fullest first: `idle in transaction`,
/// `idle in txn`, `idle-tx`.
fn state_labels(state: &str) -> Vec<String> {
    match state {
        "active" => vec!["active".into(), "act".into()],
        "idle_in_transaction" => vec![
            "idle in transaction".into(),
            "idle in txn".into(),
            "idle-tx".into(),
        ],
        "idle_in_transaction_aborted" => vec![
            "idle in transaction (aborted)".into(),
            "idle in txn aborted".into(),
            "idle-tx-ab".into(),
        ],
        other => vec![other.replace('_', " ")],
    }
}

/// A gauge's limits in `width` columns, labels shortened before a number would be cut:
/// `warn 10 crit 100`, `w 10 c 100`, `10/100`.
fn limits_text(warn: Option<f64>, crit: Option<f64>, width: u16) -> String {
    if warn.is_none() && crit.is_none() {
        return String::new();
    }
    let (w, c) = (
        format::or_dash(warn, format::count),
        format::or_dash(crit, format::count),
    );
    let forms = [
        format!("warn {w} crit {c}"),
        format!("w {w} c {c}"),
        format!("{w}/{c}"),
    ];
    forms
        .iter()
        .find(|f| f.chars().count() <= width as usize)
        .unwrap_or(&forms[2])
        .clone()
}

/// `✔ connections   34/97 ████▍░░░░░  35%`
fn usage_cells(
    badge: Span<'static>,
    name: &str,
    used: Option<f64>,
    max: Option<f64>,
    share: Option<f64>,
    style: ratatui::style::Style,
    theme: &Theme,
) -> Vec<Vec<Span<'static>>> {
    vec![
        vec![badge],
        vec![Span::styled(name.to_string(), theme.text())],
        vec![Span::styled(
            format!(
                "{}/{}",
                format::or_dash(used, format::count),
                format::or_dash(max, format::count)
            ),
            style,
        )],
        share.map_or_else(
            || vec![Span::styled(format::NONE, theme.muted())],
            |s| gauge::bar(s, BAR_WIDTH, style, theme),
        ),
        vec![Span::styled(format::or_dash(share, format::percent), style)],
    ]
}

fn chart_area(line: Rect, chart_x: u16) -> Rect {
    Rect::new(
        chart_x,
        line.y,
        line.right().saturating_sub(chart_x),
        line.height,
    )
}

#[cfg(test)]
mod tests {
    use crate::metrics::Level;
    use crate::sources::SourceStatus;
    use crate::state::Panel;
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Postgres, "postgres");

    #[test]
    fn a_pool_near_its_limit_warns_and_a_full_one_is_crit() {
        let mut state = state();
        assert_eq!(state.level("pg.app.task-tracker.utilization"), Level::Warn);
        let theme = theme();
        let screen = Rect::new(0, 0, 160, 48);
        let area = panel_area(screen, Panel::Postgres, false).unwrap();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let pool = find_in(buf, area, "28/30").unwrap();
        assert_eq!(buf[pool].fg, theme.palette.warn);
        assert_eq!(buf[(area.x + 1, pool.y)].symbol(), "▲");

        state
            .metrics
            .record(NOW_MS, "pg.app.task-tracker.connections", 30.0);
        state
            .metrics
            .record(NOW_MS, "pg.app.task-tracker.utilization", 1.0);
        refresh_levels(&mut state);
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let pool = find_in(buf, area, "30/30").unwrap();
        assert_eq!(buf[pool].fg, theme.palette.crit, "100% of size + overflow");
        assert_eq!(buf[(area.x + 1, pool.y)].symbol(), "✖");
        assert!(find_in(buf, area, "100%").is_some());
    }

    #[test]
    fn down_keeps_the_last_values_dimmed_marked_and_aged() {
        // The last sample came at NOW_MS; the server stopped answering a second later.
        let mut state = state();
        state.now_ms = NOW_MS + 12_000;
        state.metrics.gap(NOW_MS + 1_000, "pg.");
        set_source(
            &mut state,
            "pg",
            SourceStatus::down(
                "connection refused (postgres://app:hunter2-pg-secret@127.0.0.1:5432/tasks)",
            ),
            NOW_MS + 1_000,
        );
        let text = panel_text(&mut state, Panel::Postgres, 80, 24, false);
        assert!(flat(&text).contains("✖ DOWN since 10:10:01"), "{text}");
        assert!(flat(&text).contains("(connection refused"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        insta::assert_snapshot!("postgres_down_80x24", text);
        let text = panel_text(&mut state, Panel::Postgres, 160, 48, false);
        insta::assert_snapshot!("postgres_down_160x48", text);
        assert!(!text.contains('✔') && !text.contains('▲'), "{text}");
        assert!(text.contains("12s ago"), "{text}");
        let theme = theme();
        for (w, h) in [(80, 24), (160, 48)] {
            let terminal = draw(&state, &theme, w, h);
            let buf = terminal.backend().buffer();
            let area = panel_area(Rect::new(0, 0, w, h), Panel::Postgres, false).unwrap();
            let connections = find_in(buf, area, "36/97").unwrap();
            assert_eq!(buf[connections].fg, theme.palette.muted, "stale, not live");
            assert_eq!(buf[(area.x + 1, connections.y)].symbol(), "◌");
        }
    }

    /// The drill with a PgBouncer in front: its pool exhausted (17 clients waiting, 3.2 s).
    fn bouncer_state() -> crate::state::AppState {
        let mut state = state();
        let config = config_with(
            r#"
[[pgbouncer]]
name = "main"
url = "postgres://stats:bouncer-pw-secret@127.0.0.1:6432/pgbouncer"
waiting_warn = 1
waiting_crit = 10
maxwait_warn = "1s"
maxwait_crit = "5s"
"#,
        );
        state.thresholds = config.thresholds();
        state.config = config;
        for (field, value) in [
            ("cl_active", 12.0),
            ("cl_waiting", 17.0),
            ("sv_active", 10.0),
            ("sv_idle", 0.0),
            ("sv_used", 0.0),
            ("maxwait", 3.2),
        ] {
            state
                .metrics
                .record(NOW_MS, &format!("pgbouncer.main.tasks.app.{field}"), value);
        }
        state
            .metrics
            .record(NOW_MS, "pgbouncer.main.cl_waiting", 17.0);
        state.metrics.record(NOW_MS, "pgbouncer.main.maxwait", 3.2);
        set_source(&mut state, "pgbouncer.main", SourceStatus::Up, 1_000);
        refresh_levels(&mut state);
        state
    }

    #[test]
    fn a_bouncer_pool_shows_waiting_clients_coloured_by_its_thresholds() {
        let mut state = bouncer_state();
        assert_eq!(state.level("pgbouncer.main.cl_waiting"), Level::Crit);
        let (w, h) = LARGE;
        let text = panel_text(&mut state, Panel::Postgres, w, h, false);
        assert!(
            flat(&text)
                .contains("✖ bouncer tasks/app  cl 12 act · 17 wait  sv 10/10  maxwait 3.2s"),
            "{text}"
        );
        // A narrower panel shortens labels before it leaves anything out.
        let text = panel_text(&mut state, Panel::Postgres, 160, 48, false);
        assert!(
            flat(&text).contains("✖ pgb tasks/app  cl 12 · 17 wait  sv 10/10  mw 3.2s"),
            "{text}"
        );
        assert!(!text.contains("bouncer-pw-secret"), "{text}");
        insta::assert_snapshot!("postgres_bouncer_160x48", text);
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Postgres, false).unwrap();
        let waiting = find_in(buf, area, "17 wait").unwrap();
        assert_eq!(buf[waiting].fg, theme.palette.crit, "17 waiting > crit 10");
        let maxwait = find_in(buf, area, "3.2s").unwrap();
        assert_eq!(buf[maxwait].fg, theme.palette.warn, "3.2 s > warn 1 s");
        assert_eq!(buf[(area.x + 1, waiting.y)].symbol(), "✖");
    }

    #[test]
    fn a_bouncer_that_is_down_keeps_its_pool_dimmed_marked_and_aged() {
        let mut state = bouncer_state();
        state.now_ms = NOW_MS + 12_000;
        state.metrics.gap(NOW_MS + 1_000, "pgbouncer.main.");
        set_source(
            &mut state,
            "pgbouncer.main",
            SourceStatus::down("cannot connect: connection refused"),
            NOW_MS + 1_000,
        );
        let text = panel_text(&mut state, Panel::Postgres, 160, 48, false);
        assert!(
            flat(&text).contains("◌ pgb tasks/app  cl 12 · 17 wait  mw 3.2s  12s ago"),
            "{text}"
        );
        insta::assert_snapshot!("postgres_bouncer_down_160x48", text);
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Postgres, false).unwrap();
        let waiting = find_in(buf, area, "17 wait").unwrap();
        assert_eq!(buf[waiting].fg, theme.palette.muted, "stale, not live");
    }

    /// The drill with the app's own view of its pool through a `[[prometheus]]` source: full,
    /// 17 requests waiting.
    fn with_app_pool() -> crate::state::AppState {
        let mut state = state();
        let mut config = (*state.config).clone();
        config.prometheus = vec![crate::config::PrometheusConfig {
            name: "lab".into(),
            url: "http://127.0.0.1:8000/metrics".into(),
            interval: crate::toml_input::Dur::from_secs(1),
            timeout: crate::toml_input::Dur::from_secs(2),
            keep: Vec::new(),
            headers: Default::default(),
            ca_file: None,
            thresholds: Default::default(),
        }];
        state.config = std::sync::Arc::new(config);
        for at in (NOW_MS - 5_000..=NOW_MS).step_by(1_000) {
            for (field, value) in [
                ("in_use", 30.0),
                ("idle", 0.0),
                ("waiting", 17.0),
                ("max", 30.0),
            ] {
                state
                    .metrics
                    .record(at, &format!("prom.lab.pool.tasks.{field}"), value);
            }
        }
        set_source(&mut state, "prom.lab", SourceStatus::Up, 1_000);
        state
    }

    #[test]
    fn the_apps_own_pool_is_a_row_above_the_server_rows() {
        let mut state = with_app_pool();
        let text = panel_text(&mut state, Panel::Postgres, 80, 24, false);
        assert!(
            flat(&text).contains("✖ pool tasks 30/30 · 17 wait"),
            "{text}"
        );
        insta::assert_snapshot!("postgres_app_pool_80x24", text);
        let text = panel_text(&mut state, Panel::Postgres, 160, 48, false);
        assert!(
            flat(&text).contains("app pool tasks  30/30 used · 17 waiting · 0 idle"),
            "{text}"
        );
        insta::assert_snapshot!("postgres_app_pool_160x48", text);
        let lines: Vec<&str> = text.lines().collect();
        let pool = lines
            .iter()
            .position(|l| l.contains("app pool tasks"))
            .unwrap();
        let connections = lines.iter().position(|l| l.contains("36/97")).unwrap();
        assert!(pool < connections, "{text}");
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Postgres, false).unwrap();
        let used = find_in(buf, area, "30/30 used").unwrap();
        assert_eq!(buf[used].fg, theme.palette.crit, "full is critical");
        assert_eq!(buf[(area.x + 1, used.y)].symbol(), "✖");
    }

    #[test]
    fn the_apps_pool_is_stale_while_its_source_is_down() {
        let mut state = with_app_pool();
        state.now_ms = NOW_MS + 9_000;
        state.metrics.gap(NOW_MS + 1_000, "prom.lab.");
        set_source(
            &mut state,
            "prom.lab",
            SourceStatus::down("connection refused"),
            NOW_MS + 1_000,
        );
        let text = panel_text(&mut state, Panel::Postgres, 160, 48, false);
        insta::assert_snapshot!("postgres_app_pool_down_160x48", text);
        assert!(
            flat(&text).contains("◌ app pool tasks  30/30 · 17 wait · 0 idle  9s ago"),
            "{text}"
        );
        assert!(text.contains("9s ago"), "{text}");
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Postgres, false).unwrap();
        let used = find_in(buf, area, "30/30 · 17").unwrap();
        assert_eq!(buf[used].fg, theme.palette.muted, "stale, not live");
        assert_eq!(buf[(area.x + 1, used.y)].symbol(), "◌");
    }

    #[test]
    fn not_configured_is_said_plainly() {
        let mut empty = empty_state();
        let text = panel_text(&mut empty, Panel::Postgres, 80, 24, false);
        assert!(
            flat(&text).contains("not configured — add [postgres] to gameday.toml"),
            "{text}"
        );
    }
}
