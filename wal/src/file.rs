//! The file system under the log, behind two traits so that tests can run
//! the same code on real files, on memory that simulates a power cut, and on
//! files that fail on command.
//!
//! - [`DiskDir`] / [`DiskFile`]: a real directory. Recovery reads segments
//!   through a read-only memory map; writes go through `pwritev` and are made
//!   durable with `fdatasync` ([`WriteMethod::Pwrite`], the default), or
//!   through a shared writable map and `msync` of the dirty range
//!   ([`WriteMethod::Mmap`]).
//! - [`MemDir`] / [`MemFile`]: memory that remembers what was made durable,
//!   so [`MemDir::crash`] can produce the disk as a power cut would leave it:
//!   unsynced writes lost, kept, or torn sector by sector.
//! - [`FaultyDir`] / [`FaultyFile`]: wraps any directory and fails the n-th
//!   I/O operation (optionally after writing part of it), for error-path tests.
//!
//! # Why `pwrite` + `fdatasync` by default
//!
//! Measured on the development machine (ext4, virtio disk, Linux 6.18), in
//! a preallocated, already-written file, one write then one flush per round:
//!
//! | write then flush            | 128 B      | 1 MiB        |
//! |-----------------------------|------------|--------------|
//! | `pwrite` + `fdatasync`      | ~170 µs    | ~0.85 ms     |
//! | memcpy into map + `msync`   | ~400-500 µs| ~2.3-2.7 ms  |
//! | memcpy into map + `fdatasync`| ~400-530 µs| ~2.5-3.6 ms |
//!
//! Writing through the map costs two to three times more per flush (the
//! kernel write-protects the pages again at writeback and takes a fault on
//! the next store; the flush itself was the slow part). So the log writes with
//! `pwritev` and keeps memory maps for reading, where they are the fastest way
//! to scan a segment. The benchmark (`cargo bench -p wal`) measures both.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// One file of the log: a segment or a spare, always of a fixed length.
pub trait SegmentFile: Send + 'static {
    /// The length of the file in bytes.
    fn len(&self) -> u64;

    /// True if the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole content of the file, as it would be read now.
    ///
    /// # Errors
    /// Any failure to read or map the file.
    fn read_all(&self) -> io::Result<Bytes>;

    /// Writes the concatenation of `bufs` at `offset`.
    ///
    /// # Errors
    /// Any failure to write; part of the data may have been written.
    fn write_at(&mut self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()>;

    /// Makes every byte written so far durable (a data sync: the length of
    /// the file does not change on the hot path, so no metadata is needed).
    ///
    /// # Errors
    /// Any failure to flush; the state of the written data is then unknown.
    fn sync(&mut self) -> io::Result<()>;

    /// Starts writing `len` bytes at `offset` back to the device without
    /// waiting for them. A hint for large writes; it changes nothing about
    /// durability, which only [`SegmentFile::sync`] gives, so failures are
    /// left for it to report. The default does nothing.
    fn start_writeback(&mut self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

/// A directory of log files.
///
/// Names are plain file names (no separators). Creating, renaming and
/// removing a name is durable only after [`SegmentDir::sync`].
pub trait SegmentDir: Clone + Send + 'static {
    /// The files of this directory.
    type File: SegmentFile;

    /// The names of the files in the directory, in no particular order.
    ///
    /// # Errors
    /// Any failure to read the directory.
    fn list(&self) -> io::Result<Vec<String>>;

    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// The file does not exist or cannot be opened.
    fn open(&self, name: &str) -> io::Result<Self::File>;

    /// Creates a new file of `len` zero bytes whose data is durable when this
    /// returns (its name is not, until [`SegmentDir::sync`]).
    ///
    /// # Errors
    /// The file exists already, or any failure to write or sync it.
    fn create(&self, name: &str, len: u64) -> io::Result<Self::File>;

    /// Renames a file, replacing `to` if it exists.
    ///
    /// # Errors
    /// `from` does not exist, or any failure of the rename.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file.
    ///
    /// # Errors
    /// The file does not exist, or any failure to remove it.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes the creations, renames and removals done so far durable.
    ///
    /// # Errors
    /// Any failure to sync the directory.
    fn sync(&self) -> io::Result<()>;

    /// A human-readable location of a file, for error messages.
    fn describe(&self, name: &str) -> String {
        name.to_string()
    }
}

// ---------------------------------------------------------------------------
// Disk
// ---------------------------------------------------------------------------

/// How [`DiskFile`] writes and flushes (see the [module docs](self) for the
/// measurements behind the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMethod {
    /// `pwritev` then `fdatasync`.
    #[default]
    Pwrite,
    /// Copy into a shared writable map, then `msync` of the dirty range.
    Mmap,
}

/// A real directory, locked against a second user (`flock` on `LOCK`) for as
/// long as any clone of it lives.
#[derive(Clone)]
pub struct DiskDir {
    inner: Arc<DiskDirInner>,
}

struct DiskDirInner {
    path: PathBuf,
    method: WriteMethod,
    /// Held for its `flock`; released when the last clone is dropped.
    _lock: File,
}

impl fmt::Debug for DiskDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskDir")
            .field("path", &self.inner.path)
            .field("method", &self.inner.method)
            .finish()
    }
}

impl DiskDir {
    /// Opens (creating it and its parents if needed) and locks a directory,
    /// writing with [`WriteMethod::Pwrite`].
    ///
    /// # Errors
    /// The directory cannot be created or opened, or another [`DiskDir`]
    /// (in this process or another) holds its lock
    /// ([`io::ErrorKind::WouldBlock`]).
    pub fn open(path: impl AsRef<Path>) -> io::Result<DiskDir> {
        DiskDir::with_method(path, WriteMethod::default())
    }

    /// Like [`DiskDir::open`], with a chosen [`WriteMethod`].
    ///
    /// # Errors
    /// As [`DiskDir::open`].
    pub fn with_method(path: impl AsRef<Path>, method: WriteMethod) -> io::Result<DiskDir> {
        let path = path.as_ref().to_path_buf();
        if !path.is_dir() {
            fs::create_dir_all(&path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("LOCK"))?;
        // SAFETY: flock only reads the descriptor, which `lock` keeps open.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another user of the log", path.display()),
                )
            } else {
                err
            });
        }
        Ok(DiskDir {
            inner: Arc::new(DiskDirInner {
                path,
                method,
                _lock: lock,
            }),
        })
    }

    /// The path of the directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn file(&self, file: File) -> io::Result<DiskFile> {
        let len = file.metadata()?.len();
        Ok(DiskFile {
            file,
            len,
            method: self.inner.method,
            map: None,
            dirty: None,
        })
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl SegmentDir for DiskDir {
    type File = DiskFile;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.inner.path)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<DiskFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.inner.path.join(name))?;
        self.file(file)
    }

    fn create(&self, name: &str, len: u64) -> io::Result<DiskFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.inner.path.join(name))?;
        // Write the zeros rather than fallocate: an overwrite of blocks that
        // were written changes no metadata, and its fdatasync is the cheap one.
        let zeros = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
        file.sync_all()?;
        self.file(file)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.inner.path.join(from), self.inner.path.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.inner.path.join(name))
    }

    fn sync(&self) -> io::Result<()> {
        sync_dir(&self.inner.path)
    }

    fn describe(&self, name: &str) -> String {
        self.inner.path.join(name).display().to_string()
    }
}

/// A file of a [`DiskDir`].
pub struct DiskFile {
    file: File,
    len: u64,
    method: WriteMethod,
    /// The writable map, made on the first write with [`WriteMethod::Mmap`].
    map: Option<memmap2::MmapMut>,
    /// `[lo, hi)` written through the map since the last sync.
    dirty: Option<(usize, usize)>,
}

impl fmt::Debug for DiskFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskFile")
            .field("len", &self.len)
            .field("method", &self.method)
            .finish()
    }
}

/// The most `iovec`s one `pwritev` takes (Linux `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// One `pwritev` of at most [`IOV_MAX`] slices: the bytes written, which
/// may be fewer than asked.
fn pwritev_once(file: &File, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    debug_assert!(bufs.len() <= IOV_MAX);
    // SAFETY: IoSlice is ABI-compatible with iovec on Unix, the slices it
    // points to outlive the call, and the count is at most IOV_MAX.
    let n = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            bufs.len() as libc::c_int,
            offset as libc::off_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes the concatenation of `bufs` at `offset` with `write_once` (one
/// `pwritev`, or a fake in tests), which takes at most [`IOV_MAX`] slices
/// and may write fewer bytes than asked. Allocates nothing: the common case
/// is one call; more slices than `IOV_MAX` take one call per window of
/// them; after a short write that ends inside a slice, the rest of that
/// slice goes alone (short writes to a regular file are rare enough that
/// building a merged window for them is not worth it).
fn write_all_vectored(
    mut offset: u64,
    bufs: &[IoSlice<'_>],
    mut write_once: impl FnMut(u64, &[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<()> {
    let mut rest = bufs;
    // The unwritten end of `rest[0]`, after a short write ended inside it.
    let mut split: Option<&[u8]> = None;
    while !rest.is_empty() {
        let one;
        let window = match split {
            Some(part) => {
                one = [IoSlice::new(part)];
                &one[..]
            }
            None => &rest[..rest.len().min(IOV_MAX)],
        };
        let want: usize = window.iter().map(|b| b.len()).sum();
        let mut n = if want == 0 {
            0
        } else {
            match write_once(offset, window) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        debug_assert!(n <= want, "wrote {n} of {want} bytes");
        offset += n as u64;
        if let Some(part) = split {
            if n < part.len() {
                split = Some(&part[n..]);
                continue;
            }
            split = None;
            rest = &rest[1..];
            continue;
        }
        // Past the slices written in full (and any empty ones after them).
        while let Some(first) = rest.first() {
            if first.len() > n {
                break;
            }
            n -= first.len();
            rest = &rest[1..];
        }
        if n > 0 {
            split = Some(&rest[0][n..]);
        }
    }
    Ok(())
}

impl SegmentFile for DiskFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_all(&self) -> io::Result<Bytes> {
        if self.len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: the log's files are only changed by this process, through
        // this handle, while no map of them is being read (the flock of the
        // directory keeps other processes out).
        // Populated: one call maps every page instead of one fault per page.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&self.file)? };
        Ok(Bytes::from_owner(map))
    }

    fn write_at(&mut self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if offset + total as u64 > self.len {
            // Writes beyond the end would grow the file: metadata on the
            // hot path. The log never does it; refuse rather than allow it.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write beyond the end of a preallocated file",
            ));
        }
        match self.method {
            WriteMethod::Pwrite => {
                let file = &self.file;
                write_all_vectored(offset, bufs, |off, b| pwritev_once(file, off, b))
            }
            WriteMethod::Mmap => {
                if self.map.is_none() {
                    // SAFETY: as in `read_all`; the map is private to this handle.
                    self.map = Some(unsafe { memmap2::MmapMut::map_mut(&self.file)? });
                }
                let map = self.map.as_mut().expect("map just made");
                let mut pos = offset as usize;
                for b in bufs {
                    map[pos..pos + b.len()].copy_from_slice(b);
                    pos += b.len();
                }
                let (lo, hi) = self.dirty.unwrap_or((offset as usize, pos));
                self.dirty = Some((lo.min(offset as usize), hi.max(pos)));
                Ok(())
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        if self.method == WriteMethod::Pwrite && len > 0 {
            // SAFETY: a plain system call on a descriptor this handle owns.
            // Its result is ignored: the sync that follows reports failures.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.method {
            WriteMethod::Pwrite => self.file.sync_data(),
            WriteMethod::Mmap => match (self.map.as_ref(), self.dirty.take()) {
                (Some(map), Some((lo, hi))) => map.flush_range(lo, hi - lo),
                _ => Ok(()),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// The sector size at which [`MemDir::crash`] tears unsynced writes.
pub const SECTOR: usize = 512;

/// What a simulated power cut does to data written but not yet synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Every write reached the disk (as after `kill -9`: the page cache
    /// survives); directory changes not synced are still lost.
    KeepUnsynced,
    /// No unsynced write reached the disk.
    LoseUnsynced,
    /// Each unsynced sector independently reached the disk or not, chosen by
    /// a generator seeded with this value.
    Tear(u64),
}

/// An in-memory directory that tracks what is durable (see [`Crash`]).
#[derive(Clone, Default)]
pub struct MemDir {
    fs: Arc<Mutex<MemFs>>,
}

impl fmt::Debug for MemDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fs = self.lock();
        f.debug_struct("MemDir")
            .field("files", &fs.names.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Default)]
struct MemFs {
    /// The names as they are now.
    names: BTreeMap<String, Arc<Mutex<MemData>>>,
    /// The names as of the last directory sync.
    durable: BTreeMap<String, Arc<Mutex<MemData>>>,
}

#[derive(Clone, Default)]
struct MemData {
    /// What reads see now.
    current: Vec<u8>,
    /// What was synced. Invariant: equal to `current` outside `dirty`.
    synced: Vec<u8>,
    /// `[lo, hi)` that may differ from `synced`.
    dirty: Option<(usize, usize)>,
}

/// A small deterministic generator (SplitMix64) for crash simulation.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MemDir {
    /// An empty directory.
    pub fn new() -> MemDir {
        MemDir::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemFs> {
        self.fs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory as a power cut now would leave it: the names as of the
    /// last directory sync, and each file's data as of its last sync plus
    /// what `crash` lets through of the writes since. The result shares
    /// nothing with `self`, so handles still open on `self` cannot touch it.
    pub fn crash(&self, crash: Crash) -> MemDir {
        let fs = self.lock();
        let mut rng = match crash {
            Crash::Tear(seed) => seed,
            _ => 0,
        };
        let mut names = BTreeMap::new();
        for (name, data) in &fs.durable {
            let d = data.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = d.synced.clone();
            out.resize(d.current.len(), 0);
            if let Some((lo, hi)) = d.dirty {
                let hi = hi.min(d.current.len());
                let mut s = lo / SECTOR * SECTOR;
                while s < hi {
                    let e = (s + SECTOR).min(hi);
                    let keep = match crash {
                        Crash::KeepUnsynced => true,
                        Crash::LoseUnsynced => false,
                        Crash::Tear(_) => splitmix(&mut rng) & 1 == 1,
                    };
                    if keep {
                        out[s..e].copy_from_slice(&d.current[s..e]);
                    }
                    s = e;
                }
            }
            let data = MemData {
                current: out.clone(),
                synced: out,
                dirty: None,
            };
            names.insert(name.clone(), Arc::new(Mutex::new(data)));
        }
        MemDir {
            fs: Arc::new(Mutex::new(MemFs {
                durable: names.clone(),
                names,
            })),
        }
    }

    /// The current content of a file, if it exists.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let fs = self.lock();
        let data = fs.names.get(name)?;
        let d = data.lock().unwrap_or_else(|e| e.into_inner());
        Some(d.current.clone())
    }

    /// Replaces the content of a file, durably (for tests that damage files).
    ///
    /// # Panics
    /// If the file does not exist.
    pub fn set_contents(&self, name: &str, contents: Vec<u8>) {
        let fs = self.lock();
        let data = fs.names.get(name).expect("no such file");
        let mut d = data.lock().unwrap_or_else(|e| e.into_inner());
        d.current = contents.clone();
        d.synced = contents;
        d.dirty = None;
    }
}

impl SegmentDir for MemDir {
    type File = MemFile;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().names.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<MemFile> {
        let fs = self.lock();
        let data = fs.names.get(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(MemFile { data: data.clone() })
    }

    fn create(&self, name: &str, len: u64) -> io::Result<MemFile> {
        let mut fs = self.lock();
        if fs.names.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let data = Arc::new(Mutex::new(MemData {
            current: vec![0; len as usize],
            synced: vec![0; len as usize],
            dirty: None,
        }));
        fs.names.insert(name.to_string(), data.clone());
        Ok(MemFile { data })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut fs = self.lock();
        let data = fs.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        fs.names.insert(to.to_string(), data);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.lock();
        fs.names.remove(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut fs = self.lock();
        fs.durable = fs.names.clone();
        Ok(())
    }
}

/// A file of a [`MemDir`].
pub struct MemFile {
    data: Arc<Mutex<MemData>>,
}

impl MemFile {
    fn lock(&self) -> MutexGuard<'_, MemData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SegmentFile for MemFile {
    fn len(&self) -> u64 {
        self.lock().current.len() as u64
    }

    fn read_all(&self) -> io::Result<Bytes> {
        Ok(Bytes::copy_from_slice(&self.lock().current))
    }

    fn write_at(&mut self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut d = self.lock();
        let start = offset as usize;
        let mut pos = start;
        for b in bufs {
            let end = pos + b.len();
            if d.current.len() < end {
                d.current.resize(end, 0);
            }
            d.current[pos..end].copy_from_slice(b);
            pos = end;
        }
        if pos > start {
            let (lo, hi) = d.dirty.unwrap_or((start, pos));
            d.dirty = Some((lo.min(start), hi.max(pos)));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut d = self.lock();
        if let Some((lo, hi)) = d.dirty.take() {
            let len = d.current.len();
            d.synced.resize(len, 0);
            let hi = hi.min(len);
            let MemData {
                current, synced, ..
            } = &mut *d;
            synced[lo..hi].copy_from_slice(&current[lo..hi]);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// The plan shared by a [`FaultyDir`] and its files: every I/O operation
/// (write, file sync, create, rename, remove, directory sync) gets the next
/// number, and the one numbered `fail_at` fails.
#[derive(Debug, Default)]
pub struct Faults {
    ops: AtomicU64,
    fail_at: AtomicU64,
    partial_write: AtomicBool,
    failed: AtomicBool,
}

impl Faults {
    /// A plan that never fails (until [`Faults::fail_at`] is called).
    pub fn new() -> Arc<Faults> {
        let f = Faults::default();
        f.fail_at.store(u64::MAX, Ordering::SeqCst);
        Arc::new(f)
    }

    /// Makes operation number `n` (counting from 0) fail. If it is a write
    /// and `partial` is true, the first half of its data is written first.
    pub fn fail_at(&self, n: u64, partial: bool) {
        self.partial_write.store(partial, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }

    /// How many operations were counted so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// True once the planned failure happened.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Counts one operation; `Err` if it is the one to fail.
    fn tick(&self) -> Result<(), io::Error> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(io::Error::other(format!("injected fault at operation {n}")));
        }
        Ok(())
    }
}

/// A directory whose operations fail as its [`Faults`] plan says.
#[derive(Clone)]
pub struct FaultyDir<D: SegmentDir> {
    inner: D,
    faults: Arc<Faults>,
}

impl<D: SegmentDir> FaultyDir<D> {
    /// Wraps `inner` with the plan `faults`.
    pub fn new(inner: D, faults: Arc<Faults>) -> Self {
        FaultyDir { inner, faults }
    }
}

impl<D: SegmentDir> SegmentDir for FaultyDir<D> {
    type File = FaultyFile<D::File>;

    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn open(&self, name: &str) -> io::Result<Self::File> {
        Ok(FaultyFile {
            inner: self.inner.open(name)?,
            faults: self.faults.clone(),
        })
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Self::File> {
        self.faults.tick()?;
        Ok(FaultyFile {
            inner: self.inner.create(name, len)?,
            faults: self.faults.clone(),
        })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.faults.tick()?;
        self.inner.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.faults.tick()?;
        self.inner.remove(name)
    }

    fn sync(&self) -> io::Result<()> {
        self.faults.tick()?;
        self.inner.sync()
    }

    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }
}

/// A file of a [`FaultyDir`].
pub struct FaultyFile<F: SegmentFile> {
    inner: F,
    faults: Arc<Faults>,
}

impl<F: SegmentFile> SegmentFile for FaultyFile<F> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_all(&self) -> io::Result<Bytes> {
        self.inner.read_all()
    }

    fn write_at(&mut self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        if let Err(e) = self.faults.tick() {
            if self.faults.partial_write.load(Ordering::SeqCst) {
                let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                let half = &all[..all.len() / 2];
                self.inner.write_at(offset, &[IoSlice::new(half)])?;
            }
            return Err(e);
        }
        self.inner.write_at(offset, bufs)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.faults.tick()?;
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `pwritev` over a vector: checks the slice count and that each
    /// call continues where the last one stopped, and writes at most what
    /// `limit(call)` allows (`None`: fail with `EINTR`).
    fn fake_disk(
        disk: &mut Vec<u8>,
        calls: &mut Vec<usize>,
        mut limit: impl FnMut(usize) -> Option<usize>,
    ) -> impl FnMut(u64, &[IoSlice<'_>]) -> io::Result<usize> {
        move |offset, bufs| {
            assert!(bufs.len() <= IOV_MAX, "{} slices in one call", bufs.len());
            assert_eq!(
                offset as usize,
                disk.len(),
                "a write must continue the last"
            );
            let call = calls.len();
            calls.push(bufs.len());
            let Some(max) = limit(call) else {
                return Err(io::ErrorKind::Interrupted.into());
            };
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(max - n);
                disk.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
    }

    fn slices_of(bufs: &[Vec<u8>]) -> Vec<IoSlice<'_>> {
        bufs.iter().map(|b| IoSlice::new(b)).collect()
    }

    #[test]
    fn vectored_writes_split_at_iov_max() {
        // Lengths 0..=9, empty slices included, 2.9 windows of slices.
        let bufs: Vec<Vec<u8>> = (0..2950u32)
            .map(|i| vec![(i % 251) as u8; (i % 10) as usize])
            .collect();
        let want: Vec<u8> = bufs.concat();
        let (mut disk, mut calls) = (Vec::new(), Vec::new());
        write_all_vectored(
            0,
            &slices_of(&bufs),
            fake_disk(&mut disk, &mut calls, |_| Some(usize::MAX)),
        )
        .unwrap();
        assert_eq!(disk, want);
        assert_eq!(calls, [IOV_MAX, IOV_MAX, 2950 - 2 * IOV_MAX]);
        // Within the limit: one call, whatever the slices.
        let few = &bufs[..IOV_MAX];
        let (mut disk, mut calls) = (Vec::new(), Vec::new());
        let f = fake_disk(&mut disk, &mut calls, |_| Some(usize::MAX));
        write_all_vectored(0, &slices_of(few), f).unwrap();
        assert_eq!((disk, calls), (few.concat(), vec![IOV_MAX]));
        // Nothing to write: no call.
        let empty = vec![Vec::new(); 3000];
        let (mut disk, mut calls) = (Vec::new(), Vec::new());
        let f = fake_disk(&mut disk, &mut calls, |_| Some(usize::MAX));
        write_all_vectored(0, &slices_of(&empty), f).unwrap();
        assert!(disk.is_empty() && calls.is_empty());
    }

    #[test]
    fn vectored_writes_survive_short_writes_and_interrupts() {
        let bufs: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| vec![(i % 253) as u8; [0, 1, 7, 4096, 13][i as usize % 5]])
            .collect();
        let want: Vec<u8> = bufs.concat();
        // Short writes that end inside a slice, on a slice boundary, inside
        // the next window; interrupted calls in between.
        let limits = [
            Some(1),
            Some(5000),
            None,
            Some(7),
            Some(4096),
            Some(100_000),
            None,
        ];
        let (mut disk, mut calls) = (Vec::new(), Vec::new());
        let f = fake_disk(&mut disk, &mut calls, |c| limits[c % limits.len()]);
        write_all_vectored(0, &slices_of(&bufs), f).unwrap();
        assert_eq!(disk.len(), want.len());
        assert!(disk == want, "content differs");
        assert!(calls.len() > 3);
        // A write that makes no progress is an error, not a loop.
        let (mut disk, mut calls) = (Vec::new(), Vec::new());
        let f = fake_disk(&mut disk, &mut calls, |c| Some(if c < 2 { 10 } else { 0 }));
        let err = write_all_vectored(0, &slices_of(&bufs), f).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        // Other errors end the write.
        let mut n = 0;
        let err = write_all_vectored(0, &slices_of(&bufs), |_, b: &[IoSlice<'_>]| {
            n += 1;
            if n == 2 {
                Err(io::Error::other("disk on fire"))
            } else {
                Ok(b[0].len().max(1).min(b.iter().map(|s| s.len()).sum()))
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn mem_crash_keeps_synced_and_drops_unsynced() {
        let dir = MemDir::new();
        let mut f = dir.create("a", 2048).unwrap();
        dir.sync().unwrap();
        f.write_at(0, &[IoSlice::new(&[1; 600])]).unwrap();
        f.sync().unwrap();
        f.write_at(1024, &[IoSlice::new(&[2; 1024])]).unwrap();
        let lost = dir.crash(Crash::LoseUnsynced);
        let c = lost.contents("a").unwrap();
        assert_eq!(&c[..600], &[1; 600][..]);
        assert!(c[1024..].iter().all(|&b| b == 0));
        let kept = dir.crash(Crash::KeepUnsynced);
        assert!(kept.contents("a").unwrap()[1024..].iter().all(|&b| b == 2));
        // Tearing keeps whole sectors only.
        for seed in 0..8 {
            let torn = dir.crash(Crash::Tear(seed)).contents("a").unwrap();
            for s in [1024, 1536] {
                let sector = &torn[s..s + SECTOR];
                assert!(sector.iter().all(|&b| b == 2) || sector.iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn mem_names_need_a_directory_sync() {
        let dir = MemDir::new();
        dir.create("a", 8).unwrap();
        assert!(dir.crash(Crash::KeepUnsynced).contents("a").is_none());
        dir.sync().unwrap();
        dir.rename("a", "b").unwrap();
        let after = dir.crash(Crash::KeepUnsynced);
        assert!(after.contents("a").is_some() && after.contents("b").is_none());
    }

    #[test]
    fn faulty_fails_the_planned_operation_only() {
        let faults = Faults::new();
        let dir = FaultyDir::new(MemDir::new(), faults.clone());
        let mut f = dir.create("a", 16).unwrap();
        faults.fail_at(2, true);
        f.write_at(0, &[IoSlice::new(&[7; 8])]).unwrap();
        assert!(f.write_at(8, &[IoSlice::new(&[9; 8])]).is_err());
        assert!(faults.failed());
        f.sync().unwrap();
        let mut buf = f.read_all().unwrap().to_vec();
        assert_eq!(&buf[..12], &[7, 7, 7, 7, 7, 7, 7, 7, 9, 9, 9, 9]);
        buf.truncate(0);
    }

    #[test]
    fn disk_dir_is_exclusive_and_writes_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DiskDir::open(tmp.path().join("w")).unwrap();
        let again = DiskDir::open(tmp.path().join("w"));
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        for (name, method) in [("p", WriteMethod::Pwrite), ("m", WriteMethod::Mmap)] {
            let mut f = dir.create(name, 8192).unwrap();
            f.method = method;
            let bufs: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; 2]).collect();
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            f.write_at(100, &slices).unwrap();
            f.sync().unwrap();
            let back = dir.open(name).unwrap().read_all().unwrap();
            assert_eq!(back.len(), 8192);
            for (i, b) in bufs.iter().enumerate() {
                assert_eq!(&back[100 + 2 * i..102 + 2 * i], &b[..]);
            }
            assert!(f.write_at(8190, &[IoSlice::new(&[1; 4])]).is_err());
        }
        drop(dir);
        DiskDir::open(tmp.path().join("w")).unwrap();
    }
}
