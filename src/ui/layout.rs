//! The one place that splits the screen.
//!
//! ```text
//! ┌ header: session · elapsed · clock · host · faults · theme ──────────────┐  HEADER_HEIGHT
//! │ NATS       │ PostgreSQL │ Webhooks │     wide (≥ WIDE_MIN_WIDTH): 3 x 2  │
//! │ Probes     │ Faults     │ Timeline │     narrow: 2 x 3 in the same order │
//! └ footer: key hints from the key table ───────────────────────────────────┘  FOOTER_HEIGHT
//! ```
//!
//! Zoom gives the whole body to the focused panel. Below `MIN_WIDTH` x `MIN_HEIGHT` there is no
//! dashboard, only a message saying so.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::state::Panel;
use crate::ui::panels::{CHART_WINDOW_MS, MAX_CHART_ROWS, MAX_CHART_ROWS_ZOOMED};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
pub const HEADER_HEIGHT: u16 = 1;
pub const FOOTER_HEIGHT: u16 = 1;
/// From this width the panels sit three to a row.
pub const WIDE_MIN_WIDTH: u16 = 120;

const SCREEN: [Constraint; 3] = [
    Constraint::Length(HEADER_HEIGHT),
    Constraint::Fill(1),
    Constraint::Length(FOOTER_HEIGHT),
];
const WIDE_GRID: Grid = Grid {
    columns: 3,
    rows: 2,
};
const NARROW_GRID: Grid = Grid {
    columns: 2,
    rows: 3,
};

struct Grid {
    columns: u16,
    rows: u16,
}

/// Where everything goes this frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Areas {
    pub screen: Rect,
    pub header: Rect,
    pub body: Rect,
    pub footer: Rect,
    /// The panels to draw: all six, or only the zoomed one.
    pub panels: Vec<(Panel, Rect)>,
}

/// The dashboard's areas, or `None` when the screen is too small for it.
pub fn split(screen: Rect, zoom: Option<Panel>) -> Option<Areas> {
    if screen.width < MIN_WIDTH || screen.height < MIN_HEIGHT {
        return None;
    }
    let [header, body, footer] = Layout::vertical(SCREEN).areas(screen);
    let panels = match zoom {
        Some(panel) => vec![(panel, body)],
        None => grid(body),
    };
    Some(Areas {
        screen,
        header,
        body,
        footer,
        panels,
    })
}

fn grid(body: Rect) -> Vec<(Panel, Rect)> {
    let grid = if body.width >= WIDE_MIN_WIDTH {
        WIDE_GRID
    } else {
        NARROW_GRID
    };
    let rows = Layout::vertical(vec![Constraint::Fill(1); grid.rows as usize]).split(body);
    let cells = rows.iter().flat_map(|row| {
        Layout::horizontal(vec![Constraint::Fill(1); grid.columns as usize])
            .split(*row)
            .to_vec()
    });
    Panel::ALL.into_iter().zip(cells).collect()
}

/// From this many inner rows a panel is tall (a large screen): charts grow taller and a down
/// source's reason gets more rows.
pub const TALL_PANEL_ROWS: u16 = 30;

/// How tall one chart in `list` (a panel's rows for its items) may grow: the standard cap, or
/// a third of the list on a tall panel, up to the zoomed cap.
pub fn max_chart_rows(list: Rect, zoomed: bool) -> u16 {
    if zoomed {
        return MAX_CHART_ROWS_ZOOMED;
    }
    (list.height / 3).clamp(MAX_CHART_ROWS, MAX_CHART_ROWS_ZOOMED)
}

/// How much history a chart `width` columns wide shows: the standard window, longer on wide
/// charts (a column stays a few seconds).
pub fn chart_window_ms(width: u16) -> u64 {
    match width {
        160.. => 3 * CHART_WINDOW_MS,
        80.. => 2 * CHART_WINDOW_MS,
        _ => CHART_WINDOW_MS,
    }
}

/// Rows the reason of a down source may take under its status line in `area`.
pub fn reason_rows(area: Rect) -> u16 {
    if area.height >= TALL_PANEL_ROWS { 3 } else { 1 }
}

/// The area of one panel as the dashboard lays it out (for tests and benches).
pub fn panel_area(screen: Rect, panel: Panel, zoom: bool) -> Option<Rect> {
    let areas = split(screen, zoom.then_some(panel))?;
    areas
        .panels
        .into_iter()
        .find(|(p, _)| *p == panel)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_panels_tile_the_body_at_both_reference_sizes() {
        for (w, h, columns) in [(80, 24, 2), (160, 48, 3)] {
            let areas = split(Rect::new(0, 0, w, h), None).unwrap();
            assert_eq!(areas.panels.len(), 6);
            let total: u32 = areas.panels.iter().map(|(_, r)| r.area()).sum();
            assert_eq!(total, areas.body.area(), "{w}x{h}: no gaps, no overlap");
            let first_row = areas.panels.iter().filter(|(_, r)| r.y == areas.body.y);
            assert_eq!(first_row.count(), columns);
            assert_eq!((areas.header.height, areas.footer.height), (1, 1));
        }
    }

    #[test]
    fn zoom_gives_the_focused_panel_the_whole_body() {
        let areas = split(Rect::new(0, 0, 160, 48), Some(Panel::Webhooks)).unwrap();
        assert_eq!(areas.panels, vec![(Panel::Webhooks, areas.body)]);
    }

    #[test]
    fn large_screens_get_taller_charts_and_longer_history() {
        let list = |h| Rect::new(0, 0, 50, h);
        assert_eq!(max_chart_rows(list(19), false), MAX_CHART_ROWS);
        assert_eq!(max_chart_rows(list(45), false), 15);
        assert_eq!(max_chart_rows(list(90), false), MAX_CHART_ROWS_ZOOMED);
        assert_eq!(max_chart_rows(list(5), true), MAX_CHART_ROWS_ZOOMED);
        assert_eq!(chart_window_ms(40), CHART_WINDOW_MS);
        assert_eq!(chart_window_ms(100), 2 * CHART_WINDOW_MS);
        assert_eq!(chart_window_ms(250), 3 * CHART_WINDOW_MS);
    }

    #[test]
    fn below_the_minimum_there_is_no_dashboard() {
        assert!(split(Rect::new(0, 0, 79, 24), None).is_none());
        assert!(split(Rect::new(0, 0, 80, 23), None).is_none());
        assert!(split(Rect::new(0, 0, 0, 0), None).is_none());
        assert!(split(Rect::new(0, 0, 80, 24), None).is_some());
    }
}
