//! A replay's bottom row: where the position is along the session, with every fault's span
//! shaded and marks, phase changes and threshold crossings ticked, so `[` and `]` have
//! something to aim at.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::state::{AppState, MomentKind, Replaying};
use crate::theme::Theme;
use crate::ui::format;
use crate::ui::widgets::text::put_spans;

pub fn render(frame: &mut Frame, area: Rect, state: &AppState, replay: &Replaying, theme: &Theme) {
    let buf = frame.buffer_mut();
    let left = format!(" {} ", format::elapsed(state.now_ms));
    let right = format!(" {} ", format::elapsed(replay.length_ms));
    let track_width =
        (area.width as usize).saturating_sub(left.chars().count() + right.chars().count());
    if track_width < 4 {
        return;
    }
    let length = replay.length_ms.max(1);
    let column = |at_ms: u64| ((at_ms.min(length) * (track_width as u64 - 1)) / length) as usize;
    let mut cells: Vec<(char, u8)> = vec![('─', 0); track_width];
    for span in &replay.spans {
        let from = column(span.from_ms);
        let to = column(span.to_ms.unwrap_or(length));
        for cell in &mut cells[from..=to.max(from)] {
            *cell = ('━', 1);
        }
    }
    for moment in &replay.moments {
        let symbol = match moment.kind {
            MomentKind::Fault => continue,
            MomentKind::Mark => '▲',
            MomentKind::Phase => '◆',
            MomentKind::Threshold => '!',
        };
        cells[column(moment.at_ms)] = (symbol, 2);
    }
    cells[column(state.now_ms)] = ('┃', 3);
    let mut spans = vec![Span::styled(left, theme.text())];
    spans.extend(cells.into_iter().map(|(c, role)| {
        let style = match role {
            0 => theme.muted(),
            1 => theme.fault(),
            2 => theme.accent(),
            _ => theme.text().add_modifier(Modifier::BOLD),
        };
        Span::styled(c.to_string(), style)
    }));
    spans.push(Span::styled(right, theme.text()));
    put_spans(buf, area, &spans);
}
