//! Module arguments from the PAM service file: `conf=PATH` and `debug`, nothing else.
//!
//! duo_unix's pam_duo fails on any argument it does not know, and so does this module: a typo
//! such as `debg` or `cof=/etc/...` in a `required` line must lock the door, not silently run
//! with defaults the administrator did not mean.

use std::fmt;
use std::path::PathBuf;

use duo_push_common::config::DEFAULT_PATH;

/// The parsed module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    /// Configuration file (`conf=`), default [`DEFAULT_PATH`].
    pub conf: PathBuf,
    /// `debug`: more detail lines in the log.
    pub debug: bool,
}

impl Default for ModuleArgs {
    fn default() -> Self {
        Self {
            conf: PathBuf::from(DEFAULT_PATH),
            debug: false,
        }
    }
}

/// Why the module arguments were refused. The whole authentication fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// An argument this module does not know (escaped for the log).
    Unknown(String),
    /// An argument that is not UTF-8 (escaped for the log).
    NotUtf8(String),
    /// `conf=` with an empty or relative path.
    ConfNotAbsolute(String),
    /// `conf=` given twice: which one the administrator meant is unclear.
    ConfTwice,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(arg) => write!(
                f,
                "unknown module argument \"{arg}\" (only conf=PATH and debug are accepted)"
            ),
            Self::NotUtf8(arg) => write!(f, "module argument \"{arg}\" is not UTF-8"),
            Self::ConfNotAbsolute(path) => {
                write!(f, "conf= needs an absolute path, got \"{path}\"")
            }
            Self::ConfTwice => f.write_str("conf= given more than once"),
        }
    }
}

impl std::error::Error for ArgError {}

/// Escapes an argument for a log line: printable ASCII stays, everything else becomes `\xNN`.
fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Parses the module arguments as PAM hands them over (one C string each, without the NUL).
pub fn parse<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Result<ModuleArgs, ArgError> {
    let mut parsed = ModuleArgs::default();
    let mut conf_seen = false;
    for raw in args {
        let Ok(arg) = std::str::from_utf8(raw) else {
            return Err(ArgError::NotUtf8(escape(raw)));
        };
        if arg == "debug" {
            parsed.debug = true;
        } else if let Some(path) = arg.strip_prefix("conf=") {
            if conf_seen {
                return Err(ArgError::ConfTwice);
            }
            conf_seen = true;
            if !path.starts_with('/') {
                return Err(ArgError::ConfNotAbsolute(escape(path.as_bytes())));
            }
            parsed.conf = PathBuf::from(path);
        } else {
            return Err(ArgError::Unknown(escape(raw)));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ModuleArgs, ArgError> {
        parse(args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn no_arguments_give_the_default_path_without_debug() {
        assert_eq!(p(&[]).unwrap(), ModuleArgs::default());
        assert_eq!(
            ModuleArgs::default().conf,
            PathBuf::from("/etc/duo_push/duo_push.conf")
        );
    }

    #[test]
    fn conf_and_debug_are_accepted_in_any_order() {
        let a = p(&["debug", "conf=/etc/x.conf"]).unwrap();
        assert_eq!(a.conf, PathBuf::from("/etc/x.conf"));
        assert!(a.debug);
        let b = p(&["conf=/etc/x.conf", "debug"]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_unknown_argument_is_refused() {
        assert_eq!(p(&["debg"]), Err(ArgError::Unknown("debg".into())));
        assert_eq!(
            p(&["conf=/a", "nullok"]),
            Err(ArgError::Unknown("nullok".into()))
        );
        // duo_unix's other spellings are not ours.
        assert!(p(&["config=/a"]).is_err());
        assert!(p(&["DEBUG"]).is_err());
        assert!(p(&["debug=1"]).is_err());
        assert!(p(&[""]).is_err());
    }

    #[test]
    fn conf_must_be_absolute_and_given_once() {
        assert_eq!(p(&["conf="]), Err(ArgError::ConfNotAbsolute(String::new())));
        assert!(matches!(
            p(&["conf=x.conf"]),
            Err(ArgError::ConfNotAbsolute(_))
        ));
        assert_eq!(p(&["conf=/a", "conf=/b"]), Err(ArgError::ConfTwice));
    }

    #[test]
    fn hostile_arguments_are_escaped_in_the_error() {
        let err = parse([b"x\n\x1b[2Jy\xff".as_slice()]).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\n'));
        assert!(!text.contains('\x1b'));
        assert!(text.contains("\\x1b"));
        assert!(matches!(err, ArgError::NotUtf8(_)));
        let err = p(&["a\tb"]).unwrap_err().to_string();
        assert!(err.contains("a\\tb"));
    }
}
