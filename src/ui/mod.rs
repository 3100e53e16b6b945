//! The console's screen. [`render`] is a pure function of the app state and the theme: no I/O,
//! no locks, no clock (times come from `state.now_ms` and the session start), so a frame can be
//! drawn into any backend, including ratatui's `TestBackend` in tests and benches.
//!
//! Layout in [`layout`]; one file per panel in [`panels`] and per popup in [`popups`]; shared
//! drawing pieces in [`widgets`]; key hints from the key table in [`key_hints`].

pub mod format;
pub mod key_hints;
pub mod layout;
pub mod panels;
pub mod popups;
#[cfg(test)]
pub mod test_support;
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::state::AppState;
use crate::theme::Theme;

use layout::{MIN_HEIGHT, MIN_WIDTH};
use panels::PanelCtx;

/// Draws the whole screen for this state.
pub fn render(frame: &mut Frame, state: &AppState, theme: &Theme) {
    let mut screen = frame.area();
    frame.buffer_mut().set_style(screen, theme.base());
    // A replay's position bar takes the bottom row.
    if let crate::state::Role::Replay(replaying) = &state.ui.role
        && screen.height > MIN_HEIGHT
    {
        screen.height -= 1;
        let bar = Rect::new(screen.x, screen.bottom(), screen.width, 1);
        panels::position::render(frame, bar, state, replaying, theme);
    }
    let zoom = state.ui.zoom.then_some(state.ui.focus);
    let Some(areas) = layout::split(screen, zoom) else {
        too_small(frame, screen, theme);
        return;
    };
    panels::header::render(frame, areas.header, state, theme);
    for (panel, area) in &areas.panels {
        let ctx = PanelCtx {
            state,
            theme,
            focused: *panel == state.ui.focus,
            zoomed: zoom.is_some(),
        };
        panels::render(frame, *area, *panel, &ctx);
    }
    panels::footer::render(frame, areas.footer, state, theme);
    popups::render(frame, areas.screen, state, theme);
}

/// What a screen below the minimum shows instead of a squashed dashboard.
fn too_small(frame: &mut Frame, screen: Rect, theme: &Theme) {
    if screen.is_empty() {
        return;
    }
    let message = vec![
        Line::from(Span::styled(
            format!(
                "terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT}, have {}x{})",
                screen.width, screen.height
            ),
            theme
                .level(crate::metrics::Level::Warn)
                .add_modifier(Modifier::BOLD),
        )),
        Line::from(Span::styled(
            "enlarge the window or reduce the font size",
            theme.muted(),
        )),
    ];
    let height = 4.min(screen.height);
    let area = Rect::new(
        screen.x,
        screen.y + (screen.height - height) / 2,
        screen.width,
        height,
    );
    frame.render_widget(
        Paragraph::new(message).centered().wrap(Wrap { trim: true }),
        area,
    );
}

#[cfg(test)]
mod tests;
