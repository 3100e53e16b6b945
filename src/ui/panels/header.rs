//! The top row: session, elapsed time, wall clock, active faults, host load, theme. Segments that
//! do not fit are dropped least-important first, so 80 columns still show time and faults.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::metrics::Level;
use crate::state::{ActivePhase, AppState, Role};
use crate::theme::Theme;
use crate::timeline::Verdict;
use crate::ui::format;
use crate::ui::widgets::badge;
use crate::ui::widgets::text::{put_spans, put_spans_right, width};

const SEPARATOR: &str = " │ ";
/// Host load at or above this share of a resource is worth a warning colour.
const HOST_WARN_PERCENT: f64 = 90.0;

struct Segment {
    /// 0 is dropped last.
    priority: u8,
    spans: Vec<Span<'static>>,
}

pub fn render(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let buf = frame.buffer_mut();
    let right = vec![
        Span::styled("theme ", theme.muted()),
        Span::styled(state.ui.theme.clone(), theme.text()),
        Span::raw(" "),
    ];
    let console = &state.config.console;
    // A production console cannot be mistaken for another: the title is in the critical colour.
    let title = if console.production {
        theme.level(Level::Crit).add_modifier(Modifier::BOLD)
    } else {
        theme.accent().add_modifier(Modifier::BOLD)
    };
    let mut segments = vec![
        Segment {
            // Which session a viewer shows is as essential as the time.
            priority: if matches!(state.ui.role, Role::Console) {
                3
            } else {
                0
            },
            spans: vec![
                Span::styled("gameday ", title),
                Span::styled(state.session.name.clone(), theme.text()),
            ],
        },
        role_segment(state, theme),
        Segment {
            priority: 0,
            spans: vec![Span::styled(
                format!("T+{}", format::elapsed(state.now_ms)),
                theme.text().add_modifier(Modifier::BOLD),
            )],
        },
        Segment {
            priority: 1,
            spans: vec![Span::styled(
                format!("{} UTC", format::clock(state.wall(state.now_ms))),
                theme.text(),
            )],
        },
        faults_segment(state, theme),
        host_segment(state, theme),
    ];
    if let Some(segment) = scenario_segment(state, theme) {
        segments.insert(3, segment);
    }
    if let Some(segment) = environment_segment(state, theme) {
        segments.insert(1, segment);
    }
    segments.retain(|s| !s.spans.is_empty());
    let available = area.width.saturating_sub(width(&right) + 2);
    while line_width(&segments) > available {
        let Some(drop) = segments
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (s.priority, *i))
            .map(|(i, _)| i)
        else {
            break;
        };
        if segments[drop].priority == 0 {
            break;
        }
        segments.remove(drop);
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, segment) in segments.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(SEPARATOR, theme.muted()));
        }
        spans.extend(segment.spans);
    }
    let end = put_spans(buf, area, &spans);
    if end + width(&right) < area.right() {
        put_spans_right(buf, area, &right);
    }
}

/// A watcher or replay says so (never dropped: nobody must take it for the console) and who
/// drives; a console says how many follow it.
fn role_segment(state: &AppState, theme: &Theme) -> Segment {
    let strong = theme.accent().add_modifier(Modifier::BOLD);
    let driver = |d: &Option<crate::timeline::Driver>| {
        d.as_ref()
            .map(|d| format!(" by {}@{}", d.user, d.host))
            .unwrap_or_default()
    };
    let spans = match &state.ui.role {
        Role::Console if state.watchers > 0 => vec![Span::styled(
            format!("{} watching", state.watchers),
            theme.muted(),
        )],
        Role::Console => Vec::new(),
        Role::Watch(w) => {
            let mut spans = vec![Span::styled("WATCH", strong)];
            match (&w.ended, w.waiting) {
                (Some(reason), _) => spans.push(Span::styled(
                    format!(" · ended ({reason})"),
                    theme.level(Level::Warn),
                )),
                (None, true) => spans.push(Span::styled(
                    " · waiting for a session…",
                    theme.level(Level::Warn),
                )),
                (None, false) => spans.push(Span::styled(driver(&w.driver), theme.text())),
            }
            spans
        }
        Role::Replay(r) => vec![
            Span::styled("REPLAY", strong),
            Span::styled(
                format!(
                    " {} {}×{}",
                    if r.playing { "▶" } else { "❚❚" },
                    r.speed,
                    driver(&r.driver)
                ),
                theme.text(),
            ),
        ],
    };
    Segment {
        priority: if matches!(state.ui.role, Role::Console) {
            2
        } else {
            0
        },
        spans,
    }
}

/// The environment the console points at. Never dropped: "which system is this?" must be
/// answered on every screen, at every size.
fn environment_segment(state: &AppState, theme: &Theme) -> Option<Segment> {
    let console = &state.config.console;
    if console.environment.is_none() && !console.production {
        return None;
    }
    let span = if console.production {
        Span::styled(
            format!("{} {}", badge::WARN, console.environment_label()),
            theme.level(Level::Crit).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled(
            format!("env {}", console.environment_label()),
            theme.accent(),
        )
    };
    Some(Segment {
        priority: 0,
        spans: vec![span],
    })
}

/// "▶ NATS broker failure · INJECTING 0:12" while it runs, then the verdict. Never dropped: on a
/// shared screen everyone must see which phase the drill is in.
fn scenario_segment(state: &AppState, theme: &Theme) -> Option<Segment> {
    let run = state.scenario_view()?;
    let title: String = run.title.chars().take(28).collect();
    let mut spans = vec![Span::styled(format!("▶ {title} · "), theme.accent())];
    match &run.verdict {
        Some((verdict, _)) => {
            let (symbol, style) = match verdict {
                Verdict::Pass => (badge::OK, theme.level(Level::Ok)),
                Verdict::Fail | Verdict::Aborted => (badge::CRIT, theme.level(Level::Crit)),
            };
            spans.push(Span::styled(
                format!("{symbol} {}", verdict.label()),
                style.add_modifier(Modifier::BOLD),
            ));
        }
        None => {
            spans.push(Span::styled(
                run.phase.label().to_uppercase(),
                theme.accent().add_modifier(Modifier::BOLD),
            ));
            if let Some(deadline) = run.until_ms {
                spans.push(Span::styled(
                    format!(
                        " {}",
                        format::countdown(deadline.saturating_sub(state.now_ms))
                    ),
                    theme.text(),
                ));
            }
            if run.waiting {
                spans.push(Span::styled(
                    " (waiting for the operator)",
                    theme.level(Level::Warn),
                ));
            }
        }
    }
    Some(Segment { priority: 0, spans })
}

fn line_width(segments: &[Segment]) -> u16 {
    let separators = segments.len().saturating_sub(1) as u16 * SEPARATOR.chars().count() as u16;
    segments.iter().map(|s| width(&s.spans)).sum::<u16>() + separators
}

fn faults_segment(state: &AppState, theme: &Theme) -> Segment {
    let active = &state.faults.active;
    let failed = active
        .iter()
        .filter(|f| f.phase == ActivePhase::Failed)
        .count();
    let running = active.len() - failed;
    let others = state.faults.others.len();
    let mut spans = Vec::new();
    if running == 0 && failed == 0 && others == 0 {
        spans.push(Span::styled("no active faults", theme.muted()));
    }
    if running > 0 {
        let noun = if running == 1 { "fault" } else { "faults" };
        spans.push(Span::styled(
            format!("◆ {running} {noun} active"),
            theme.level(Level::Warn).patch(theme.fault()),
        ));
    }
    if failed > 0 {
        if running > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(
            format!("{} {failed} failed", badge::CRIT),
            theme.level(Level::Crit),
        ));
    }
    if others > 0 {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        // Faults other consoles applied are just as real for everyone watching this screen.
        spans.push(Span::styled(
            format!("◇ {others} by other consoles"),
            theme.level(Level::Warn).patch(theme.fault()),
        ));
    }
    Segment { priority: 0, spans }
}

fn host_segment(state: &AppState, theme: &Theme) -> Segment {
    let part = |label: &str, key: &str| {
        let value = state.metrics.current(key);
        let style = match value {
            Some(v) if v >= HOST_WARN_PERCENT => theme.level(Level::Warn),
            _ => theme.text(),
        };
        vec![
            Span::styled(format!("{label} "), theme.muted()),
            Span::styled(
                value.map_or_else(|| format::NONE.to_string(), |v| format!("{v:.0}%")),
                style,
            ),
        ]
    };
    let mut spans = part("cpu", "host.cpu");
    spans.push(Span::raw(" "));
    spans.extend(part("mem", "host.mem"));
    Segment { priority: 2, spans }
}
