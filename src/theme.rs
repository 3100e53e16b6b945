//! Themes: colours by semantic role (ok, warn, crit, fault_span…), never by widget.
//!
//! Built-ins (`dark`, `light`, `high-contrast`, `colorblind`) are the files in `themes/`, embedded
//! in the binary; a built-in name always means the embedded theme. Any other name is read from
//! `<themes_dir>/<name>.toml`, which may start with `base = "dark"` and set only the roles it
//! changes. Colours are ANSI names, `#rrggbb` or `reset`. A bad file is one located
//! [`InputError`]; unknown roles are errors.
//!
//! Colour never carries meaning alone: panels pair every state with a symbol (✔ ▲ ✖), and with
//! `NO_COLOR` set the theme turns monochrome (bold, reverse and underline only).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};
use serde::{Deserialize, Deserializer};

use crate::metrics::Level;
use crate::toml_input::{InputError, TomlDoc};

/// The themes shipped with gameday, in `t` cycling order.
const BUILT_IN: [(&str, &str); 4] = [
    ("dark", include_str!("../themes/dark.toml")),
    ("light", include_str!("../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../themes/high-contrast.toml"),
    ),
    ("colorblind", include_str!("../themes/colorblind.toml")),
];

/// The ANSI colour names a theme may use.
const COLOR_NAMES: [(&str, Color); 16] = [
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("darkgray", Color::DarkGray),
    ("lightred", Color::LightRed),
    ("lightgreen", Color::LightGreen),
    ("lightyellow", Color::LightYellow),
    ("lightblue", Color::LightBlue),
    ("lightmagenta", Color::LightMagenta),
    ("lightcyan", Color::LightCyan),
    ("white", Color::White),
];

/// Declares the roles once: the palette, the file format and the merge over a base all follow.
macro_rules! roles {
    ($($role:ident: $doc:literal,)*) => {
        /// Colours by semantic role.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Palette {
            $(#[doc = $doc] pub $role: Color,)*
            /// Colours for series that have no threshold, used in turn.
            pub series: Vec<Color>,
        }

        /// A theme file as written: every role optional, so a file can override a base.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ThemeFile {
            base: Option<String>,
            $($role: Option<ThemeColor>,)*
            series: Option<Vec<ThemeColor>>,
        }

        /// Every role a theme file may set.
        pub const ROLES: &[&str] = &[$(stringify!($role),)* "series"];

        impl ThemeFile {
            fn resolve(self, base: Option<Palette>, doc: &TomlDoc) -> Result<Palette, InputError> {
                Ok(Palette {
                    $($role: match (self.$role, &base) {
                        (Some(c), _) => c.0,
                        (None, Some(b)) => b.$role,
                        (None, None) => return Err(missing_role(doc, stringify!($role))),
                    },)*
                    series: match (self.series, base) {
                        (Some(list), _) if list.is_empty() => {
                            return Err(doc.error_at("series", "expected at least one colour"));
                        }
                        (Some(list), _) => list.into_iter().map(|c| c.0).collect(),
                        (None, Some(b)) => b.series,
                        (None, None) => return Err(missing_role(doc, "series")),
                    },
                })
            }
        }
    };
}

roles! {
    bg: "Background of the whole screen (`reset` keeps the terminal's).",
    fg: "Ordinary text.",
    muted: "Labels, units, stale (last known) values, things not configured.",
    accent: "Key labels, marks and notes, the app name.",
    border: "Panel borders.",
    border_focused: "The focused panel's border.",
    ok: "Healthy: up, under every threshold.",
    warn: "At or above a warn threshold.",
    crit: "At or above a crit threshold, failed faults.",
    down: "A source that is down.",
    selection: "Background of the selected row.",
    selection_fg: "Text on the selected row.",
    fault_span: "Background shading of chart columns while a fault was active.",
}

/// A colour as a theme file writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ThemeColor(Color);

impl std::str::FromStr for ThemeColor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_color(s).map(ThemeColor).ok_or_else(|| {
            let names: Vec<&str> = COLOR_NAMES.iter().map(|(n, _)| *n).collect();
            format!(
                "expected a colour: a name ({}), \"#rrggbb\" or \"reset\", got \"{s}\"",
                names.join(", ")
            )
        })
    }
}

impl<'de> Deserialize<'de> for ThemeColor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ThemeColor;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a colour like \"red\", \"#ff8800\" or \"reset\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ThemeColor, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

fn parse_color(s: &str) -> Option<Color> {
    if s == "reset" {
        return Some(Color::Reset);
    }
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        return Some(Color::Rgb(channel(0)?, channel(2)?, channel(4)?));
    }
    COLOR_NAMES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, c)| *c)
}

fn missing_role(doc: &TomlDoc, role: &str) -> InputError {
    let bases: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    doc.error_at(
        role,
        format!(
            "missing role (set it, or add `base = \"dark\"` to inherit every role not set; bases: {})",
            bases.join(", ")
        ),
    )
}

/// A loaded theme: a palette, and whether to drop colour altogether (`NO_COLOR`).
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub palette: Palette,
    /// No colours at all: meaning is carried by bold, reverse, underline and symbols.
    pub monochrome: bool,
}

impl Theme {
    /// A built-in theme or `<themes_dir>/<name>.toml`, made monochrome when `NO_COLOR` is set and
    /// non-empty.
    pub fn load(name: &str, themes_dir: &Path) -> Result<Theme, InputError> {
        Self::load_with_no_color(name, themes_dir, std::env::var_os("NO_COLOR").as_deref())
    }

    /// [`Theme::load`] with the value of `NO_COLOR` given.
    fn load_with_no_color(
        name: &str,
        themes_dir: &Path,
        no_color: Option<&OsStr>,
    ) -> Result<Theme, InputError> {
        let theme = Self::load_colored(name, themes_dir)?;
        if no_color_requested(no_color) {
            Ok(theme.monochrome())
        } else {
            Ok(theme)
        }
    }

    /// Like [`Theme::load`] but ignoring `NO_COLOR`.
    pub fn load_colored(name: &str, themes_dir: &Path) -> Result<Theme, InputError> {
        if let Some(theme) = Self::built_in(name) {
            return Ok(theme);
        }
        let file = theme_file(themes_dir, name);
        if !file.is_file() {
            return Err(InputError::file(
                &file,
                format!(
                    "no theme \"{name}\": expected a built-in ({}) or a file {}",
                    built_in_names().join(", "),
                    file.display()
                ),
            ));
        }
        let doc = TomlDoc::read(&file)?;
        Ok(Theme {
            name: name.to_string(),
            palette: parse(&doc)?,
            monochrome: false,
        })
    }

    /// A built-in theme by name.
    pub fn built_in(name: &str) -> Option<Theme> {
        let (name, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        let file = Path::new("themes").join(format!("{name}.toml"));
        // The built-in files are checked by a test; a broken one is a build defect.
        let doc = TomlDoc::from_text(&file, text.to_string()).expect("built-in theme parses");
        let palette = parse(&doc).expect("built-in theme is complete");
        Some(Theme {
            name: name.to_string(),
            palette,
            monochrome: false,
        })
    }

    /// The same theme without colour.
    pub fn monochrome(mut self) -> Theme {
        self.monochrome = true;
        self
    }

    fn fg(&self, color: Color) -> Style {
        if self.monochrome {
            Style::new()
        } else {
            Style::new().fg(color)
        }
    }

    /// The screen: background and ordinary text.
    pub fn base(&self) -> Style {
        if self.monochrome {
            Style::new()
        } else {
            Style::new().fg(self.palette.fg).bg(self.palette.bg)
        }
    }

    pub fn text(&self) -> Style {
        self.fg(self.palette.fg)
    }

    pub fn muted(&self) -> Style {
        self.fg(self.palette.muted)
    }

    pub fn accent(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(self.palette.accent)
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        match (focused, self.monochrome) {
            (true, true) => Style::new().add_modifier(Modifier::BOLD),
            (true, false) => Style::new().fg(self.palette.border_focused),
            (false, _) => self.fg(self.palette.border),
        }
    }

    /// A level's symbol and state colour (ok is green, not plain).
    pub fn level(&self, level: Level) -> Style {
        match (level, self.monochrome) {
            (Level::Ok, _) => self.fg(self.palette.ok),
            (Level::Warn, true) => Style::new().add_modifier(Modifier::BOLD),
            (Level::Crit, true) => Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            (Level::Warn, false) => Style::new()
                .fg(self.palette.warn)
                .add_modifier(Modifier::BOLD),
            (Level::Crit, false) => Style::new()
                .fg(self.palette.crit)
                .add_modifier(Modifier::BOLD),
        }
    }

    /// A number at a level: plain text while ok, so only trouble stands out.
    pub fn value(&self, level: Level) -> Style {
        match level {
            Level::Ok => self.text(),
            _ => self.level(level),
        }
    }

    pub fn down(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new()
                .fg(self.palette.down)
                .add_modifier(Modifier::BOLD)
        }
    }

    /// Last known values while their source is down: never shown like live ones (muted; dim
    /// without colour, where muted is plain text).
    pub fn stale(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            self.muted()
        }
    }

    pub fn selection(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
                .fg(self.palette.selection_fg)
                .bg(self.palette.selection)
        }
    }

    /// Things a fault did or is doing (timeline fault events, active faults).
    pub fn fault(&self) -> Style {
        if self.monochrome {
            Style::new().add_modifier(Modifier::UNDERLINED)
        } else {
            Style::new().bg(self.palette.fault_span)
        }
    }

    /// The background of chart columns inside a fault span; `None` without colour.
    pub fn fault_span_bg(&self) -> Option<Color> {
        (!self.monochrome).then_some(self.palette.fault_span)
    }

    /// The `i`-th series colour, cycling.
    pub fn series(&self, i: usize) -> Style {
        let colors = &self.palette.series;
        self.fg(colors[i % colors.len()])
    }
}

/// `NO_COLOR` counts when set and non-empty (no-color.org).
pub fn no_color_requested(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

fn theme_file(themes_dir: &Path, name: &str) -> PathBuf {
    themes_dir.join(format!("{name}.toml"))
}

fn parse(doc: &TomlDoc) -> Result<Palette, InputError> {
    let raw: ThemeFile = doc.deserialize().map_err(|mut e| {
        if let Some(rest) = e.message.strip_prefix("unknown key ") {
            e.message = format!("unknown role {rest}");
        }
        e
    })?;
    let base = match raw.base.as_deref() {
        None => None,
        Some(base) => match BUILT_IN.iter().find(|(n, _)| *n == base) {
            Some((_, text)) => {
                let base_doc = TomlDoc::from_text(
                    &Path::new("themes").join(format!("{base}.toml")),
                    text.to_string(),
                )?;
                Some(parse(&base_doc)?)
            }
            None => {
                return Err(doc.error_at(
                    "base",
                    format!(
                        "expected a built-in theme ({}), got \"{base}\"",
                        built_in_names().join(", ")
                    ),
                ));
            }
        },
    };
    raw.resolve(base, doc)
}

/// Every theme name `t` cycles through: the built-ins, then the files in `themes_dir` (sorted).
pub fn available(themes_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = built_in_names().into_iter().map(String::from).collect();
    let mut extra: Vec<String> = theme_files(themes_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|n| !names.contains(n))
        .collect();
    extra.sort();
    names.extend(extra);
    names
}

/// Why `name` is no theme this config can use (neither a built-in nor a file in `themes_dir`),
/// naming the ones it can; `None` when it is one.
pub fn unknown(name: &str, themes_dir: &Path) -> Option<String> {
    if Theme::built_in(name).is_some() || theme_file(themes_dir, name).is_file() {
        return None;
    }
    let built_in = built_in_names();
    let files: Vec<String> = available(themes_dir)
        .into_iter()
        .filter(|n| !built_in.contains(&n.as_str()))
        .collect();
    let files = if files.is_empty() {
        format!("no theme files in {}", themes_dir.display())
    } else {
        format!("{} (files in {})", files.join(", "), themes_dir.display())
    };
    Some(format!(
        "unknown theme \"{name}\"; known themes: {} (built-in), {files}",
        built_in.join(", ")
    ))
}

/// Checks every theme file in `themes_dir` (for `gameday check`); a missing directory is fine.
pub fn validate_dir(themes_dir: &Path) -> Result<(), InputError> {
    if !themes_dir.exists() {
        return Ok(());
    }
    let files = theme_files(themes_dir)
        .map_err(|e| InputError::file(themes_dir, format!("cannot read: {e}")))?;
    for file in files {
        parse(&TomlDoc::read(&file)?)?;
    }
    Ok(())
}

fn theme_files(themes_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(themes_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some(OsStr::new("toml")) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".artifacts/test")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_built_in_is_complete_and_matches_its_file_in_themes() {
        let repo_themes = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        for name in built_in_names() {
            let theme = Theme::built_in(name).unwrap();
            assert_eq!(theme.name, name);
            assert!(!theme.palette.series.is_empty());
            // The files double as documentation: they must load on their own too.
            let from_file = parse(&TomlDoc::read(&theme_file(&repo_themes, name)).unwrap());
            assert_eq!(from_file.unwrap(), theme.palette, "{name}");
        }
        validate_dir(&repo_themes).unwrap();
    }

    #[test]
    fn an_unknown_theme_names_the_built_ins_and_the_files_there_are() {
        let d = dir("theme-unknown");
        assert_eq!(unknown("dark", &d), None);
        let message = unknown("no-such-theme", &d).unwrap();
        assert_eq!(
            message,
            format!(
                "unknown theme \"no-such-theme\"; known themes: dark, light, high-contrast, \
                 colorblind (built-in), no theme files in {}",
                d.display()
            )
        );
        std::fs::write(d.join("ocean.toml"), "base = \"dark\"\n").unwrap();
        assert_eq!(unknown("ocean", &d), None, "a file in the themes dir");
        let message = unknown("oecan", &d).unwrap();
        assert!(
            message.ends_with(&format!("(built-in), ocean (files in {})", d.display())),
            "{message}"
        );
    }

    #[test]
    fn built_ins_tell_ok_from_crit_and_warn() {
        for name in built_in_names() {
            let p = Theme::built_in(name).unwrap().palette;
            assert_ne!(p.ok, p.crit, "{name}");
            assert_ne!(p.ok, p.warn, "{name}");
            assert_ne!(p.border, p.border_focused, "{name}");
            assert_ne!(p.fault_span, p.bg, "{name}");
        }
    }

    #[test]
    fn colours_parse_as_names_hex_and_reset() {
        assert_eq!(parse_color("red"), Some(Color::Red));
        assert_eq!(parse_color("lightcyan"), Some(Color::LightCyan));
        assert_eq!(parse_color("#ff8800"), Some(Color::Rgb(0xff, 0x88, 0)));
        assert_eq!(parse_color("#FF8800"), Some(Color::Rgb(0xff, 0x88, 0)));
        assert_eq!(parse_color("reset"), Some(Color::Reset));
        assert_eq!(parse_color("#ff880"), None);
        assert_eq!(parse_color("#gg8800"), None);
        assert_eq!(parse_color("orange"), None);
    }

    #[test]
    fn a_file_with_a_base_overrides_only_what_it_sets() {
        let d = dir("theme-partial");
        std::fs::write(
            d.join("stage.toml"),
            "base = \"dark\"\ncrit = \"#ff0000\"\nseries = [\"white\"]\n",
        )
        .unwrap();
        let theme = Theme::load_colored("stage", &d).unwrap();
        let dark = Theme::built_in("dark").unwrap().palette;
        assert_eq!(theme.name, "stage");
        assert_eq!(theme.palette.crit, Color::Rgb(255, 0, 0));
        assert_eq!(theme.palette.series, vec![Color::White]);
        assert_eq!(theme.palette.warn, dark.warn);
        assert_eq!(theme.palette.fault_span, dark.fault_span);
        assert_eq!(
            available(&d),
            ["dark", "light", "high-contrast", "colorblind", "stage"]
        );
        validate_dir(&d).unwrap();
    }

    #[test]
    fn a_bad_colour_names_file_line_role_and_the_expected_form() {
        let d = dir("theme-bad-colour");
        std::fs::write(
            d.join("bad.toml"),
            "base = \"dark\"\n\nwarn = \"orangeish\"\n",
        )
        .unwrap();
        let err = Theme::load_colored("bad", &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3:8: warn: expected a colour: a name (black, red, green, yellow, blue, \
                 magenta, cyan, gray, darkgray, lightred, lightgreen, lightyellow, lightblue, \
                 lightmagenta, lightcyan, white), \"#rrggbb\" or \"reset\", got \"orangeish\"",
                d.join("bad.toml").display()
            )
        );
        assert_eq!(validate_dir(&d).unwrap_err(), err);
    }

    #[test]
    fn a_bad_colour_in_the_series_list_is_located_too() {
        let d = dir("theme-bad-series");
        std::fs::write(
            d.join("bad.toml"),
            "base = \"light\"\nseries = [\"blue\", \"#12345\"]\n",
        )
        .unwrap();
        let err = Theme::load_colored("bad", &d).unwrap_err();
        assert_eq!((err.line, err.column), (2, 19));
        assert_eq!(err.path, "series[1]");
        assert!(err.message.ends_with("got \"#12345\""), "{}", err.message);
    }

    #[test]
    fn an_unknown_role_is_an_error_that_lists_the_roles() {
        let d = dir("theme-unknown-role");
        std::fs::write(
            d.join("typo.toml"),
            "base = \"dark\"\nwarning = \"yellow\"\n",
        )
        .unwrap();
        let err = Theme::load_colored("typo", &d).unwrap_err();
        assert_eq!((err.line, err.path.as_str()), (2, "warning"));
        assert!(
            err.message
                .starts_with("unknown role `warning`, expected one of"),
            "{}",
            err.message
        );
        for role in ROLES {
            assert!(err.message.contains(&format!("`{role}`")), "{role}");
        }
    }

    #[test]
    fn a_file_without_base_must_set_every_role() {
        let d = dir("theme-incomplete");
        std::fs::write(d.join("half.toml"), "bg = \"black\"\nfg = \"white\"\n").unwrap();
        let err = Theme::load_colored("half", &d).unwrap_err();
        assert_eq!(err.path, "muted");
        assert!(err.message.starts_with("missing role"), "{}", err.message);
    }

    #[test]
    fn an_unknown_base_or_name_is_explained() {
        let d = dir("theme-unknown-base");
        std::fs::write(d.join("x.toml"), "base = \"solarized\"\n").unwrap();
        let err = Theme::load_colored("x", &d).unwrap_err();
        assert_eq!((err.line, err.path.as_str()), (1, "base"));
        assert_eq!(
            err.message,
            "expected a built-in theme (dark, light, high-contrast, colorblind), got \"solarized\""
        );
        let err = Theme::load_colored("nope", &d).unwrap_err();
        assert!(err.message.starts_with("no theme \"nope\""), "{err}");
    }

    #[test]
    fn a_broken_toml_file_fails_validation_with_its_location() {
        let d = dir("theme-syntax");
        std::fs::write(d.join("ok.toml"), "base = \"dark\"\n").unwrap();
        std::fs::write(d.join("zz.toml"), "base = \"dark\"\ncrit = \n").unwrap();
        let err = validate_dir(&d).unwrap_err();
        assert_eq!(err.file, d.join("zz.toml"));
        assert_eq!(err.line, 2);
        assert!(validate_dir(&d.join("missing")).is_ok());
    }

    #[test]
    fn no_color_set_and_non_empty_makes_any_theme_monochrome() {
        let d = dir("theme-no-color");
        std::fs::write(d.join("stage.toml"), "base = \"light\"\n").unwrap();
        for name in ["dark", "stage"] {
            let load =
                |v: Option<&str>| Theme::load_with_no_color(name, &d, v.map(OsStr::new)).unwrap();
            assert!(!load(None).monochrome, "{name}");
            assert!(!load(Some("")).monochrome, "{name}: empty does not count");
            let mono = load(Some("1"));
            assert!(mono.monochrome, "{name}");
            assert_eq!(mono.name, name);
            assert_eq!(mono.base().fg, None);
        }
    }

    #[test]
    fn monochrome_styles_use_no_colour_but_keep_meaning_in_modifiers() {
        let theme = Theme::built_in("dark").unwrap().monochrome();
        let styles = [
            theme.base(),
            theme.text(),
            theme.muted(),
            theme.accent(),
            theme.border(true),
            theme.border(false),
            theme.level(Level::Ok),
            theme.level(Level::Warn),
            theme.level(Level::Crit),
            theme.down(),
            theme.stale(),
            theme.selection(),
            theme.fault(),
            theme.series(3),
        ];
        for s in styles {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
        assert!(
            theme
                .level(Level::Crit)
                .add_modifier
                .contains(Modifier::REVERSED)
        );
        assert!(theme.selection().add_modifier.contains(Modifier::REVERSED));
        assert!(theme.border(true).add_modifier.contains(Modifier::BOLD));
        assert_eq!(theme.fault_span_bg(), None);
    }
}
