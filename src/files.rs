//! Reading the files crigate is pointed at (its configuration, keys, certificates,
//! policies), each bounded in size: a wrong path (a log, a device, a disk image) fails
//! with a clear error instead of filling memory.

use std::io::{self, Read};
use std::path::Path;

/// The contents of `path`, or `Ok(None)` when it holds more than `max` bytes. Reads at
/// most `max + 1` bytes whatever the file's size, so a file that grows while it is read
/// is caught too.
///
/// # Errors
///
/// The file cannot be opened or read.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// [`read_bounded`], as UTF-8 text; text that is not UTF-8 is an
/// [`io::ErrorKind::InvalidData`] error.
///
/// # Errors
///
/// The file cannot be opened or read, or is not UTF-8.
pub fn read_bounded_text(path: &Path, max: u64) -> io::Result<Option<String>> {
    read_bounded(path, max)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_up_to_its_bound_and_refused_one_byte_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 16]).unwrap();
        assert_eq!(read_bounded(&path, 16).unwrap(), Some(vec![7u8; 16]));
        assert_eq!(read_bounded(&path, 17).unwrap(), Some(vec![7u8; 16]));
        assert_eq!(read_bounded(&path, 15).unwrap(), None);
        assert_eq!(read_bounded(&path, 0).unwrap(), None);
    }

    #[test]
    fn text_is_bounded_alike_and_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "héllo").unwrap();
        assert_eq!(
            read_bounded_text(&path, 6).unwrap().as_deref(),
            Some("héllo")
        );
        assert_eq!(read_bounded_text(&path, 5).unwrap(), None);
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let error = read_bounded_text(&path, 6).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_missing_file_is_an_error_not_an_empty_read() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_bounded(&dir.path().join("missing"), 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
