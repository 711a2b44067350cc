//! Zero-copy decoding of one record into a typed view.
//!
//! [`decode`] checks the header (length, kind, alignment) and hands back references
//! into the record's own bytes: nothing is copied and nothing is allocated.

use bytemuck::Pod;

use crate::abi::*;

/// Why a record could not be decoded. Records come from the kernel or from a file;
/// either way a bad one is a value, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {min}-byte header")]
    TooShort { len: usize, min: usize },
    #[error("record buffer is not 8-byte aligned")]
    Misaligned,
    #[error("unknown event kind id {id}")]
    UnknownKind { id: u16 },
    #[error(
        "{kind} record: header says {header_len} bytes, expected {expected}, buffer has {available}"
    )]
    BadLength {
        kind: &'static str,
        header_len: u32,
        expected: usize,
        available: usize,
    },
}

/// The payload of a record, by kind family. Several kinds share a payload type;
/// [`Event::kind`] tells them apart.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    ProcessExec(&'a ProcessExec),
    ProcessFork(&'a ProcessFork),
    ProcessExit(&'a ProcessExit),
    FileOp(&'a FileOp),
    FileRename(&'a FileRename),
    Tcp(&'a TcpSockEvent),
    PacketDrop(&'a PacketDrop),
    CredChange(&'a CredChange),
    Ptrace(&'a PtraceEvent),
    Capability(&'a CapabilityEvent),
    Module(&'a ModuleEvent),
    Bpf(&'a BpfCall),
    Mount(&'a MountEvent),
    Signal(&'a SignalEvent),
    Cgroup(&'a CgroupEvent),
    OomKill(&'a OomKill),
    DirectReclaim(&'a DirectReclaim),
    PageFault(&'a PageFault),
    Syscall(&'a SyscallEvent),
    RunqWait(&'a RunqWait),
    IoSlow(&'a IoSlow),
    TcpLife(&'a TcpLife),
}

/// A decoded record: header and payload, both borrowed from the record bytes.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: Kind,
    pub header: &'a EventHeader,
    pub payload: Payload<'a>,
}

impl Event<'_> {
    /// The task's command name, without NUL padding.
    pub fn comm(&self) -> &[u8] {
        cstr_bytes(&self.header.comm)
    }
}

const HEADER_LEN: usize = size_of::<EventHeader>();

fn view<T: Pod>(bytes: &[u8]) -> Result<&T, DecodeError> {
    bytemuck::try_from_bytes(&bytes[..size_of::<T>()]).map_err(|_| DecodeError::Misaligned)
}

/// Decodes one record. `bytes` must start at the header and be 8-byte aligned (ring
/// buffer records always are); it may be longer than the record.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            min: HEADER_LEN,
        });
    }
    let header: &EventHeader = view(bytes)?;
    let kind = Kind::from_id(header.kind).ok_or(DecodeError::UnknownKind { id: header.kind })?;
    let expected = kind.record_len();
    if header.len as usize != expected || bytes.len() < expected {
        return Err(DecodeError::BadLength {
            kind: kind.name(),
            header_len: header.len,
            expected,
            available: bytes.len(),
        });
    }
    let body = &bytes[HEADER_LEN..expected];
    use Kind::*;
    let payload = match kind {
        ProcessExec => Payload::ProcessExec(view(body)?),
        ProcessFork => Payload::ProcessFork(view(body)?),
        ProcessExit => Payload::ProcessExit(view(body)?),
        FileOpen | FileUnlink | FileChmod => Payload::FileOp(view(body)?),
        FileRename => Payload::FileRename(view(body)?),
        NetTcpConnect | NetTcpAccept | NetTcpEstablished | NetTcpClose | NetTcpRetransmit
        | NetTcpResetSent | NetTcpResetReceived => Payload::Tcp(view(body)?),
        NetPacketDrop => Payload::PacketDrop(view(body)?),
        SecuritySetuid | SecuritySetgid => Payload::CredChange(view(body)?),
        SecurityPtrace => Payload::Ptrace(view(body)?),
        SecurityCapability => Payload::Capability(view(body)?),
        SecurityModuleLoad | SecurityModuleUnload => Payload::Module(view(body)?),
        SecurityBpf => Payload::Bpf(view(body)?),
        SecurityMount | SecurityUmount => Payload::Mount(view(body)?),
        SecuritySignal => Payload::Signal(view(body)?),
        ContainerCgroupMkdir | ContainerCgroupRmdir | ContainerCgroupAttach => {
            Payload::Cgroup(view(body)?)
        }
        MemoryOomKill => Payload::OomKill(view(body)?),
        MemoryDirectReclaim => Payload::DirectReclaim(view(body)?),
        MemoryPageFault => Payload::PageFault(view(body)?),
        Syscall => Payload::Syscall(view(body)?),
        PerfRunqWait => Payload::RunqWait(view(body)?),
        PerfIoSlow => Payload::IoSlow(view(body)?),
        PerfTcpLife => Payload::TcpLife(view(body)?),
    };
    Ok(Event {
        kind,
        header,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8-byte aligned buffer holding one record of `kind`.
    fn record(kind: Kind) -> Vec<u64> {
        let len = kind.record_len();
        let mut words = vec![0u64; len / 8 + 1];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let h: &mut EventHeader = bytemuck::from_bytes_mut(&mut bytes[..HEADER_LEN]);
        h.kind = kind as u16;
        h.len = len as u32;
        h.pid = 42;
        h.comm[..4].copy_from_slice(b"test");
        words
    }

    #[test]
    fn decodes_every_kind_in_place() {
        for &kind in Kind::ALL {
            let words = record(kind);
            let bytes: &[u8] = bytemuck::cast_slice(&words);
            let ev = decode(bytes).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(ev.kind, kind);
            assert_eq!(ev.header.pid, 42);
            assert_eq!(ev.comm(), b"test");
            // The view points into the buffer: no copy was made.
            assert_eq!(ev.header as *const _ as *const u8, bytes.as_ptr());
        }
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        let words = record(Kind::FileRename);
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::TooShort { len: 10, .. })
        ));
        assert!(matches!(
            decode(&bytes[..100]),
            Err(DecodeError::BadLength { .. })
        ));
        assert_eq!(decode(&bytes[1..]).unwrap_err(), DecodeError::Misaligned);

        let mut words = record(Kind::FileOpen);
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        b[16] = 99; // kind
        assert_eq!(decode(b).unwrap_err(), DecodeError::UnknownKind { id: 99 });
        let mut words = record(Kind::FileOpen);
        let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        b[20] = 8; // len low byte: wrong length for the kind
        assert!(matches!(decode(b), Err(DecodeError::BadLength { .. })));
    }
}
