//! State badges: every state is a symbol *and* a colour, so no theme relies on colour alone.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ratatui::text::Span;

use crate::metrics::Level;
use crate::theme::Theme;
use crate::ui::format;

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
