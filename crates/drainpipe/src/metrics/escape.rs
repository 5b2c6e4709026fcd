//! Label values in the Prometheus text format.

use std::borrow::Cow;

/// A label value escaped for the text format (backslash, quote, newline).
pub(crate) fn esc(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}
