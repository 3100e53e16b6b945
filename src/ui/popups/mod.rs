//! Popups over the dashboard. Each owns the keyboard while open (the app dispatches with the
//! mode's key table); here they are only drawn, with their keys taken from that same table.

pub mod confirm;
pub mod help;
pub mod note;
pub mod picker;
pub mod toast;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear};

use crate::keymap::{Action, KeyContext};
use crate::state::{AppState, Mode};
use crate::theme::Theme;
use crate::ui::key_hints;

/// Draws the popup of the current mode, then the toast.
pub fn render(frame: &mut Frame, screen: Rect, state: &AppState, theme: &Theme) {
    match &state.ui.mode {
        Mode::Normal => {}
        Mode::Help => help::render(frame, screen, state.main_key_context(), theme),
        Mode::Confirm(confirm) => confirm::render(frame, screen, confirm, theme),
        Mode::Note(text) => note::render(frame, screen, text, theme),
        Mode::Picker(picker) => picker::render(frame, screen, picker, theme),
    }
    toast::render(frame, screen, state, theme);
}

/// A `width` x `height` box centred in `area`, clamped to it.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// Clears `area` and draws a popup frame with `title` on top and the context's keys at the
/// bottom; returns the inside.
pub fn frame_popup(
    frame: &mut Frame,
    area: Rect,
    title: Vec<Span<'static>>,
    context: KeyContext,
    border: ratatui::style::Style,
    theme: &Theme,
) -> Rect {
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(border)
        .style(theme.base())
        .title(Line::from(title))
        .title_bottom(Line::from(key_spans(context, theme)).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    inner
}

/// ` y / enter yes · n / esc no `: the keys of a popup, from its key table (quitting is the same
/// everywhere and left to the help).
pub fn key_spans(context: KeyContext, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = vec![Span::raw(" ")];
    for (i, group) in key_hints::groups(context)
        .into_iter()
        .filter(|g| g.action != Action::Quit)
        .enumerate()
    {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.muted()));
        }
        spans.push(Span::styled(
            group.all_keys(),
            theme.accent().add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(
            format!(" {}", group.hint.unwrap_or(group.help)),
            theme.text(),
        ));
    }
    spans.push(Span::raw(" "));
    spans
}
