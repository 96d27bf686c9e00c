//! The second edge of herd-scan (beside `walk`): opening a hash signature index file and
//! mapping it read-only, so millions of signatures cost page cache shared by every process
//! that maps the same file, not heap, and loading costs what checking the file costs.
//!
//! The file is checked before it is trusted: header (magic, version, its checksum), length,
//! and the payload's CRC-32, read with `pread` from the same descriptor that is then mapped
//! (reading through `read` keeps the checked pages out of this process's resident set; the
//! kernel's page cache holds them either way). Whoever writes index files must replace them
//! by rename, never rewrite one in place: a mapped file truncated underneath would fault.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::hashtable::{HEADER_LEN, HashTable, Header, PayloadCheck, Storage, TableError};

/// A read-only, private mapping of a whole file.
#[derive(Debug)]
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

// The mapping is read-only and never changes while it lives: sharing it is sharing `&[u8]`.
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}
#[allow(unsafe_code)]
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` from its start; `len` must be the file's length.
    #[allow(unsafe_code)]
    pub fn new(file: &File, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of a descriptor we own; the pointer is
        // checked against MAP_FAILED, and only read within `len` (the file's length, which
        // writers never shrink: they replace index files by rename).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr as *const u8,
            len,
        })
    }
}

impl Deref for Mapping {
    type Target = [u8];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes (or dangling with len 0).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what `new` mapped; no slice of it outlives `self`.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.len);
            }
        }
    }
}

/// Why an index file could not be used; every case means "rebuild it".
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read the index: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("the index was built from another signature set")]
    OtherKey,
}

/// Opens, checks and maps the index file at `path`. With `key`, an index built for anything
/// else is refused (`OpenError::OtherKey`) before its payload is read.
pub fn open_index(path: &Path, key: Option<[u8; 32]>) -> Result<HashTable, OpenError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    let got = read_at_most(&file, &mut head, 0)?;
    let header = Header::parse(&head[..got])?;
    if key.is_some_and(|k| k != header.key) {
        return Err(OpenError::OtherKey);
    }
    if len != header.payload_len + HEADER_LEN as u64 {
        return Err(TableError::Length {
            expected: header.payload_len + HEADER_LEN as u64,
            found: len,
        }
        .into());
    }
    let mut crc = crc32fast::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    let mut at = HEADER_LEN as u64;
    while at < len {
        let n = read_at_most(&file, &mut block, at)?;
        if n == 0 {
            return Err(TableError::Length {
                expected: len,
                found: at,
            }
            .into());
        }
        crc.update(&block[..n]);
        at += n as u64;
    }
    if crc.finalize() != header.payload_crc {
        return Err(TableError::PayloadChecksum.into());
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("index too large to map"))?;
    let mapping = Mapping::new(&file, len)?;
    Ok(HashTable::from_storage(
        Storage::Mapped(mapping),
        PayloadCheck::AlreadyVerified,
    )?)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::HashKind;
    use crate::hashtable::HashTableBuilder;

    #[test]
    fn mapped_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.idx");
        let mut b = HashTableBuilder::new();
        b.add(HashKind::Md5, &[1; 16], Some(68), "Mapped.A")
            .unwrap();
        std::fs::write(&path, b.finish([3; 32])).unwrap();
        let t = open_index(&path, Some([3; 32])).unwrap();
        assert!(t.is_mapped());
        let mut out = Vec::new();
        t.lookup(HashKind::Md5, &[1; 16], 68, &mut out);
        assert_eq!(&*out[0], "Mapped.A");
        assert!(matches!(
            open_index(&path, Some([4; 32])),
            Err(OpenError::OtherKey)
        ));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            open_index(&path, None),
            Err(OpenError::Table(TableError::Length { .. }))
        ));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 200] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            open_index(&path, None),
            Err(OpenError::Table(TableError::PayloadChecksum))
        ));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(open_index(&path, None), Err(OpenError::Table(_))));
    }
}
