//! State badges: every state is a symbol *and* a colour, so no theme relies on colour alone.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::metrics::Level;
use crate::theme::Theme;
use crate::ui::format;
use crate::ui::widgets::text::{Part, put_parts, put_wrapped};

pub const OK: &str = "✔";
pub const WARN: &str = "▲";
pub const CRIT: &str = "✖";
pub const DOWN: &str = "✖";
pub const CONNECTING: &str = "…";
pub const NOT_CONFIGURED: &str = "–";

pub fn level_symbol(level: Level) -> &'static str {
    match level {
        Level::Ok => OK,
        Level::Warn => WARN,
        Level::Crit => CRIT,
    }
}

/// A level as a symbol in its colour.
pub fn level(level: Level, theme: &Theme) -> Span<'static> {
    Span::styled(level_symbol(level), theme.level(level))
}

/// What a panel can honestly say about its source.
#[derive(Debug, Clone, PartialEq)]
pub enum Health<'a> {
    /// Nothing in the config.
    NotConfigured,
    /// Not reached yet since start.
    Connecting,
    Up,
    /// Down since then, for this reason (already redacted).
    Down {
        since: DateTime<Utc>,
        reason: Cow<'a, str>,
    },
}

impl Health<'_> {
    /// Values shown now are the last known ones, not live.
    pub fn is_stale(&self) -> bool {
        matches!(self, Health::Down { .. })
    }

    /// The badge: `✔ up`, `… connecting…`, `✖ DOWN since 10:08:12 (connection refused)`.
    pub fn spans(&self, theme: &Theme) -> Vec<Span<'static>> {
        match self {
            Health::NotConfigured => vec![Span::styled(
                format!("{NOT_CONFIGURED} not configured"),
                theme.muted(),
            )],
            Health::Connecting => vec![Span::styled(
                format!("{CONNECTING} connecting…"),
                theme.muted(),
            )],
            Health::Up => vec![Span::styled(format!("{OK} up"), theme.level(Level::Ok))],
            Health::Down { since, reason } => vec![
                Span::styled(
                    format!("{DOWN} DOWN since {}", format::clock(*since)),
                    theme.down(),
                ),
                Span::styled(format!(" ({reason})"), theme.down()),
            ],
        }
    }

    /// The badge without the reason, for tight rows: `✖ DOWN 10:08:12`.
    pub fn short_spans(&self, theme: &Theme) -> Vec<Span<'static>> {
        match self {
            Health::Down { since, .. } => vec![Span::styled(
                format!("{DOWN} DOWN {}", format::clock(*since)),
                theme.down(),
            )],
            Health::Up => vec![Span::styled(OK, theme.level(Level::Ok))],
            other => other.spans(theme),
        }
    }
}

/// A source's status line: `✔ up  rtt 1.3ms  nats://127.0.0.1:4222` on the first row of `area`,
/// the `extras` (values) after the badge and the URL last, shortened to its host and port when
/// the row is narrow. When the source is down the first row says since when and the reason gets
/// the rows below, up to `reason_rows`. Returns the rows used.
pub fn status_line(
    buf: &mut Buffer,
    area: Rect,
    health: &Health<'_>,
    extras: Vec<Part<'_>>,
    url: &str,
    reason_rows: u16,
    theme: &Theme,
) -> u16 {
    if area.is_empty() {
        return 0;
    }
    let head = match health {
        Health::Down { since, .. } => vec![Span::styled(
            format!("{DOWN} DOWN since {}", format::clock(*since)),
            theme.down(),
        )],
        other => other.spans(theme),
    };
    let mut parts = vec![Part::new(head)];
    parts.extend(extras);
    if !url.is_empty() {
        parts.push(
            Part::new(vec![Span::styled(format!("  {url}"), theme.muted())])
                .or(vec![Span::styled(
                    format!("  {}", format::host_path(url)),
                    theme.muted(),
                )])
                .or(vec![Span::styled(
                    format!("  {}", format::host_port(url)),
                    theme.muted(),
                )])
                .drop(1),
        );
    }
    put_parts(buf, Rect::new(area.x, area.y, area.width, 1), &parts);
    let Health::Down { reason, .. } = health else {
        return 1;
    };
    let below = Rect::new(area.x, area.y + 1, area.width, area.height - 1);
    1 + put_wrapped(
        buf,
        below,
        &[Span::styled(format!("({reason})"), theme.down())],
        reason_rows,
    )
}
