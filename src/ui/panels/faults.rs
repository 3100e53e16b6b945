//! Faults: why faults are unavailable (notices), the active faults (selectable, with target,
//! params, phase and the countdown to their lease's end, or the error), then the catalog with
//! the key that triggers each entry.
//!
//! ```text
//! active
//! ▶◆ pg-hold       postgres  hold 50   ACTIVE    3m59s left
//!  ✖ webhook-slow  telegram  35s      FAILED    proxy daemon not reachable
//! catalog · 1-9 triggers
//!  1 nats-stop     container stop  nats  SIGSTOP  lease 5m
//! ```

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;

use crate::keymap;
use crate::metrics::Level;
use crate::state::ScenarioView;
use crate::state::{ActiveFault, ActivePhase, CatalogEntry, Panel};
use crate::theme::Theme;
use crate::ui::format;
use crate::ui::widgets::badge;
use crate::ui::widgets::columns::{self, Column};
use crate::ui::widgets::text::{put_spans, put_wrapped};

use super::{Kpi, PanelCtx, frame_panel, headline, row};

const NAME_MIN: u16 = 8;
const NAME_MAX: u16 = 22;
const TARGET_MAX: u16 = 18;
const KIND_MAX: u16 = 16;
const PARAMS_MAX: u16 = 26;
const PHASE_WIDTH: u16 = 9;
const SELECTED: &str = "▶";
/// A notice may take this many rows.
const NOTICE_ROWS: u16 = 2;

pub fn render(frame: &mut Frame, area: Rect, ctx: &PanelCtx<'_>) {
    let inner = frame_panel(frame, area, ctx, Panel::Faults);
    let buf = frame.buffer_mut();
    let theme = ctx.theme;
    let board = &ctx.state.faults;
    let selected = board.active.get(ctx.state.ui.selected_fault);
    let body = headline(
        buf,
        inner,
        ctx,
        &[
            Kpi {
                label: "active faults".into(),
                value: board.active.len().to_string(),
                style: if board.active.is_empty() {
                    theme.text()
                } else {
                    theme.level(Level::Warn)
                },
            },
            Kpi {
                label: selected.map_or_else(|| "time left".into(), |f| format!("{} left", f.name)),
                value: selected.map_or_else(
                    || format::NONE.to_string(),
                    |f| format::countdown_digits(f.expires_ms.saturating_sub(ctx.state.now_ms)),
                ),
                style: theme.text(),
            },
        ],
    );

    let mut y = body.y;
    let bottom = body.bottom();
    for notice in &board.notices {
        if y >= bottom {
            return;
        }
        y += put_wrapped(
            buf,
            Rect::new(body.x, y, body.width, bottom - y),
            &[Span::styled(
                format!("{} {}", badge::WARN, ctx.redact(notice)),
                theme.level(Level::Warn),
            )],
            NOTICE_ROWS,
        );
    }

    if let Some(run) = &ctx.state.scenario_view() {
        y = draw_scenario(
            buf,
            Rect::new(body.x, y, body.width, bottom.saturating_sub(y)),
            run,
            ctx,
        );
    }

    // Active faults first: they are what the operator must not lose sight of.
    let rows_left = bottom.saturating_sub(y);
    if board.active.is_empty() {
        if rows_left > 0 {
            put_spans(
                buf,
                Rect::new(body.x, y, body.width, 1),
                &[Span::styled("no active faults", theme.muted())],
            );
            y += 1;
        }
    } else if rows_left > 0 {
        put_spans(
            buf,
            Rect::new(body.x, y, body.width, 1),
            &[Span::styled(
                format!(
                    "active ({}) · r reverts the selected one",
                    board.active.len()
                ),
                theme.muted(),
            )],
        );
        y += 1;
        // Leave two rows for the catalog when there is one.
        let reserve = if board.catalog.is_empty() { 0 } else { 2 };
        let budget = (bottom.saturating_sub(y).saturating_sub(reserve) as usize)
            .max(1)
            .min(board.active.len());
        let selected = ctx.state.ui.selected_fault.min(board.active.len() - 1);
        let first = (selected + 1).saturating_sub(budget);
        let cols = active_columns(&board.active);
        let kept = columns::fit(&cols, body.width, LAST_MIN);
        for (i, fault) in board.active.iter().enumerate().skip(first).take(budget) {
            if y >= bottom {
                break;
            }
            let line = Rect::new(body.x, y, body.width, 1);
            draw_active(buf, line, fault, i == selected, &cols, &kept, ctx);
            y += 1;
        }
    }

    y = draw_others(
        buf,
        Rect::new(body.x, y, body.width, bottom.saturating_sub(y)),
        ctx,
    );

    if y >= bottom {
        return;
    }
    if board.catalog.is_empty() {
        put_wrapped(
            buf,
            Rect::new(body.x, y, body.width, bottom - y),
            &[Span::styled(
                "no faults in the catalog — add [[fault]] entries to the config",
                theme.muted(),
            )],
            bottom - y,
        );
        return;
    }
    let rows_left = bottom.saturating_sub(y) as usize;
    let mut heading = format!("catalog · {} triggers", keymap::FAULT_KEYS_LABEL);
    let compact = board.catalog.len() + 1 > rows_left && rows_left < 3;
    if compact {
        // No room for "… N more" as well: the heading says how many there are.
        let hint = if ctx.zoomed { "" } else { " (z zooms)" };
        heading = format!("{heading} · {} entries{hint}", board.catalog.len());
    }
    put_spans(
        buf,
        Rect::new(body.x, y, body.width, 1),
        &[Span::styled(heading, theme.muted())],
    );
    y += 1;
    let cols = catalog_columns(&board.catalog);
    let kept = columns::fit(&cols, body.width, 0);
    let rows_left = rows_left - 1;
    let (shown, hidden) = if compact || board.catalog.len() <= rows_left {
        (board.catalog.len().min(rows_left), 0)
    } else {
        let shown = rows_left.saturating_sub(1);
        (shown, board.catalog.len() - shown)
    };
    for entry in board.catalog.iter().take(shown) {
        let cells = vec![
            vec![match entry.key {
                Some(k) => Span::styled(k.to_string(), theme.accent().add_modifier(Modifier::BOLD)),
                None => Span::styled(format::NONE, theme.muted()),
            }],
            vec![Span::styled(entry.name.clone(), theme.text())],
            vec![Span::styled(entry.kind.clone(), theme.muted())],
            vec![Span::styled(entry.target.clone(), theme.text())],
            vec![Span::styled(entry.params.clone(), theme.muted())],
            vec![Span::styled(
                format!("lease {}", format::span(entry.lease_ms)),
                theme.muted(),
            )],
        ];
        columns::draw_row(
            buf,
            Rect::new(body.x, y, body.width, 1),
            &cols,
            &kept,
            &cells,
        );
        y += 1;
    }
    super::more(buf, row(body, body.height.saturating_sub(1)), hidden, ctx);
}

/// Other consoles' faults, from the shared ledger, each with its owner; returns the next row.
/// Everyone sees every fault that is applied, whoever applied it.
fn draw_others(buf: &mut Buffer, area: Rect, ctx: &PanelCtx<'_>) -> u16 {
    let theme = ctx.theme;
    let others = &ctx.state.faults.others;
    let mut y = area.y;
    if others.is_empty() || area.height == 0 {
        return y;
    }
    put_spans(
        buf,
        Rect::new(area.x, y, area.width, 1),
        &[Span::styled(
            format!("other consoles ({}) · E reverts everyone's", others.len()),
            theme.muted(),
        )],
    );
    y += 1;
    // Leave two rows for the catalog.
    let budget = (area.height.saturating_sub(3) as usize).max(1);
    let now = ctx.state.wall(ctx.state.now_ms);
    let active = theme.level(Level::Warn).patch(theme.fault());
    for other in others.iter().take(budget) {
        if y >= area.bottom() {
            break;
        }
        let left = (other.lease_until - now).num_milliseconds().max(0) as u64;
        let state = if other.owner_alive {
            Span::styled(format!("ACTIVE {} left", format::span(left)), active)
        } else {
            Span::styled("console gone: reverting", theme.level(Level::Crit))
        };
        put_spans(
            buf,
            Rect::new(area.x, y, area.width, 1),
            &[
                Span::styled("◇ ", active),
                Span::styled(format!("{} ", other.name), theme.text()),
                Span::styled(format!("{} ", other.target), theme.muted()),
                Span::styled(format!("by {} ", ctx.redact(&other.owner)), theme.text()),
                state,
            ],
        );
        y += 1;
    }
    y
}

/// The running scenario's checks with live pass/fail, failing ones first; returns the next row.
fn draw_scenario(buf: &mut Buffer, area: Rect, run: &ScenarioView, ctx: &PanelCtx<'_>) -> u16 {
    let theme = ctx.theme;
    if area.height == 0 {
        return area.y;
    }
    let mut y = area.y;
    let heading = match &run.verdict {
        Some((verdict, reason)) => {
            format!("scenario {}: {} — {reason}", run.title, verdict.label())
        }
        None => format!("scenario {} · {}", run.title, run.phase.label()),
    };
    put_spans(
        buf,
        Rect::new(area.x, y, area.width, 1),
        &[Span::styled(heading, theme.accent())],
    );
    y += 1;
    // Keep room for the active faults below.
    let budget = (area.height.saturating_sub(1) as usize)
        .saturating_sub(3)
        .max(1);
    let mut checks: Vec<_> = run.checks.iter().collect();
    checks.sort_by_key(|c| (c.passed != Some(false), c.group));
    for live in checks.iter().take(budget) {
        if y >= area.bottom() {
            break;
        }
        let (symbol, style) = match live.passed {
            Some(true) => (badge::OK, theme.level(Level::Ok)),
            Some(false) => (badge::CRIT, theme.level(Level::Crit)),
            None => ("…", theme.muted()),
        };
        let measured = live
            .value
            .map_or_else(|| format::NONE.to_string(), crate::timeline::fmt_value);
        put_spans(
            buf,
            Rect::new(area.x, y, area.width, 1),
            &[
                Span::styled(format!("{symbol} "), style),
                Span::styled(format!("{:<8} ", live.group.label()), theme.muted()),
                Span::styled(live.name.clone(), theme.text()),
                Span::styled(
                    format!("  {} · now {measured}", live.expected),
                    theme.muted(),
                ),
            ],
        );
        y += 1;
    }
    y
}

fn width_of<'a>(texts: impl Iterator<Item = &'a String>, min: u16, max: u16) -> u16 {
    texts
        .map(|t| t.chars().count() as u16)
        .max()
        .unwrap_or(0)
        .clamp(min, max)
}

/// The countdown or the error gets the rest of the row, at least this much.
const LAST_MIN: u16 = 10;

fn active_columns(active: &[ActiveFault]) -> [Column; 5] {
    [
        Column::left("", 2, 0),
        Column::left(
            "",
            width_of(active.iter().map(|f| &f.name), NAME_MIN, NAME_MAX),
            0,
        ),
        Column::left(
            "",
            width_of(active.iter().map(|f| &f.target), 4, TARGET_MAX),
            2,
        ),
        Column::left(
            "",
            width_of(active.iter().map(|f| &f.params), 4, PARAMS_MAX),
            3,
        ),
        Column::left("", PHASE_WIDTH, 0),
    ]
}

fn catalog_columns(catalog: &[CatalogEntry]) -> [Column; 6] {
    [
        Column::left("", 1, 0),
        Column::left(
            "",
            width_of(catalog.iter().map(|e| &e.name), NAME_MIN, NAME_MAX),
            0,
        ),
        Column::left(
            "",
            width_of(catalog.iter().map(|e| &e.kind), 4, KIND_MAX),
            3,
        ),
        Column::left(
            "",
            width_of(catalog.iter().map(|e| &e.target), 4, TARGET_MAX),
            1,
        ),
        Column::left(
            "",
            width_of(catalog.iter().map(|e| &e.params), 4, PARAMS_MAX),
            2,
        ),
        Column::left("", 11, 4),
    ]
}

fn phase_cell(phase: ActivePhase, theme: &Theme) -> (Span<'static>, Span<'static>) {
    let active = theme.level(Level::Warn).patch(theme.fault());
    match phase {
        ActivePhase::Injecting => (
            Span::styled("◌", theme.muted()),
            Span::styled("injecting", theme.muted()),
        ),
        ActivePhase::Active => (Span::styled("◆", active), Span::styled("ACTIVE", active)),
        ActivePhase::Reverting => (
            Span::styled("◌", theme.muted()),
            Span::styled("reverting", theme.muted()),
        ),
        ActivePhase::Failed => (
            Span::styled(badge::CRIT, theme.level(Level::Crit)),
            Span::styled("FAILED", theme.level(Level::Crit)),
        ),
    }
}

fn draw_active(
    buf: &mut Buffer,
    line: Rect,
    fault: &ActiveFault,
    selected: bool,
    cols: &[Column],
    kept: &[usize],
    ctx: &PanelCtx<'_>,
) {
    let theme = ctx.theme;
    let (symbol, phase) = phase_cell(fault.phase, theme);
    let left = fault.expires_ms.saturating_sub(ctx.state.now_ms);
    let last = match (&fault.error, fault.phase) {
        (Some(error), _) => Span::styled(ctx.redact(error).into_owned(), theme.level(Level::Crit)),
        (None, ActivePhase::Active) => {
            Span::styled(format!("{} left", format::countdown(left)), theme.text())
        }
        (None, _) => Span::raw(""),
    };
    let marker = if selected { SELECTED } else { " " };
    let cells = vec![
        vec![Span::styled(marker, theme.accent()), symbol],
        vec![Span::styled(fault.name.clone(), theme.text())],
        vec![Span::styled(fault.target.clone(), theme.text())],
        vec![Span::styled(fault.params.clone(), theme.muted())],
        vec![phase],
    ];
    let x = columns::draw_row(buf, line, cols, kept, &cells);
    put_spans(
        buf,
        Rect::new(x, line.y, line.right().saturating_sub(x), 1),
        &[last],
    );
    if selected && ctx.focused {
        highlight(buf, line, theme);
    }
}

/// The selection background across the row; state colours stay, muted text turns readable.
fn highlight(buf: &mut Buffer, line: Rect, theme: &Theme) {
    let selection: Style = theme.selection();
    let muted = theme.muted().fg;
    for x in line.left()..line.right() {
        let cell = &mut buf[(x, line.y)];
        if theme.monochrome {
            cell.modifier.insert(Modifier::REVERSED);
            continue;
        }
        if let Some(bg) = selection.bg {
            cell.set_bg(bg);
        }
        if let Some(fg) = selection.fg
            && (Some(cell.fg) == muted || cell.fg == ratatui::style::Color::Reset)
        {
            cell.set_fg(fg);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::state::{ActiveFault, ActivePhase, Panel};
    use crate::ui::layout::panel_area;
    use crate::ui::test_support::*;
    use ratatui::layout::Rect;

    crate::ui::test_support::panel_snapshots!(Panel::Faults, "faults");

    #[test]
    fn an_empty_catalog_says_how_to_add_one_and_notices_are_shown() {
        let mut state = state();
        state.faults.catalog.clear();
        state.faults.active.clear();
        state
            .faults
            .notices
            .push("Docker engine not reachable: /var/run/docker.sock: permission denied".into());
        let text = panel_text(&mut state, Panel::Faults, 160, 48, false);
        insta::assert_snapshot!("faults_empty_160x48", text);
        assert!(
            flat(&text).contains("no faults in the catalog — add [[fault]] entries to the config")
        );
        assert!(text.contains("▲ Docker engine not reachable"));
        assert!(text.contains("no active faults"));
    }

    #[test]
    fn the_selected_fault_is_marked_highlighted_when_focused_and_kept_in_view() {
        let mut state = state();
        state.ui.focus = Panel::Faults;
        for i in 0..8 {
            state.faults.active.push(ActiveFault {
                id: format!("x-{i}"),
                name: format!("extra-{i}"),
                target: "api".into(),
                params: "200ms".into(),
                phase: ActivePhase::Active,
                started_ms: NOW_MS,
                expires_ms: NOW_MS + 45_000,
                error: None,
            });
        }
        state.ui.selected_fault = 9;
        let theme = theme();
        let terminal = draw(&state, &theme, 80, 24);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 80, 24), Panel::Faults, false).unwrap();
        let selected = find_in(buf, area, "▶").expect("selection in view");
        assert_eq!(find_in(buf, area, "extra-7").map(|p| p.y), Some(selected.y));
        assert_eq!(
            buf[(selected.x + 3, selected.y)].bg,
            theme.palette.selection
        );
        assert!(find_in(buf, area, "45s left").is_some());
        // The border is thick and in the focus colour.
        assert_eq!(buf[(area.x, area.y)].symbol(), "┏");
        assert_eq!(buf[(area.x, area.y)].fg, theme.palette.border_focused);
    }

    #[test]
    fn a_failed_fault_shows_its_error_in_the_crit_colour() {
        let state = state();
        let theme = theme();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Faults, false).unwrap();
        let failed = find_in(buf, area, "FAILED").unwrap();
        assert_eq!(buf[failed].fg, theme.palette.crit);
        let error = find_in(buf, area, "proxy daemon").unwrap();
        assert_eq!(buf[error].fg, theme.palette.crit);
    }
}
