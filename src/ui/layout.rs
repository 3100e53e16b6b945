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
    fn below_the_minimum_there_is_no_dashboard() {
        assert!(split(Rect::new(0, 0, 79, 24), None).is_none());
        assert!(split(Rect::new(0, 0, 80, 23), None).is_none());
        assert!(split(Rect::new(0, 0, 0, 0), None).is_none());
        assert!(split(Rect::new(0, 0, 80, 24), None).is_some());
    }
}
