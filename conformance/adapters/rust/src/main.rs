//! Starter adapter for the virtio-lab conformance protocol (docs/conformance-protocol.md), in
//! Rust with the standard library only:
//!
//!     cargo build --offline --release --manifest-path conformance/adapters/rust/Cargo.toml
//!     npx tsx sim conform --impl conformance/adapters/rust/target/release/vlab-starter-adapter
//!
//! It implements hello, reset and memory.* over byte arrays and answers every other op
//! `{"_tag":"Unsupported"}`, so the suite runs the memory cases and skips the rest. To test your
//! own crate, replace `Memory` (or add ops in `dispatch`) with calls into it (a
//! `vm_memory::GuestMemoryMmap`, a `virtio_queue::Queue`...), and list each op in `OPS`.
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

const OPS: &[&str] = &["hello", "reset", "memory.create", "memory.read", "memory.write"];
/// What this adapter will allocate (more: ResourceLimit).
const MAX_TOTAL: u64 = 64 << 20;

// ---- a small JSON reader: enough for requests ---------------------------------------------

#[derive(Debug)]
enum Json {
    Null,
    /// Read by ops that take booleans (queue.configure's ready, eventIdx) once you add them.
    #[allow(dead_code)]
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.s.get(self.i) == Some(&c)).then(|| self.i += 1)
    }
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        other => other as char,
                    });
                }
                _ => out.push(c as char),
            }
        }
    }
    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                if self.eat(b'}').is_some() {
                    return Some(Json::Obj(m));
                }
                loop {
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.insert(k, self.value()?);
                    if self.eat(b',').is_none() {
                        self.eat(b'}')?;
                        return Some(Json::Obj(m));
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    if self.eat(b',').is_none() {
                        self.eat(b']')?;
                        return Some(Json::Arr(v));
                    }
                }
            }
            b'"' => self.string().map(Json::Str),
            b't' if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Some(Json::Bool(true))
            }
            b'f' if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Some(Json::Bool(false))
            }
            b'n' if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Some(Json::Null)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                (self.i > start).then(|| Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
        }
    }
}

impl Json {
    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }
    /// A u64 argument: a decimal string or a JSON number of digits.
    fn u64(&self) -> Option<u64> {
        match self {
            Json::Str(s) | Json::Num(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        }
    }
    fn u32(&self) -> Option<u32> {
        match self {
            Json::Num(_) => self.u64().and_then(|v| u32::try_from(v).ok()),
            _ => None,
        }
    }
}

// ---- the session: guest memory as byte arrays (replace with yours) -------------------------

/// An error answer: a tag from the protocol's error vocabulary.
type Refusal = &'static str;

#[derive(Default)]
struct Memory {
    /// Sorted by base; None until memory.create.
    regions: Option<Vec<(u64, Vec<u8>)>>,
}

impl Memory {
    fn create(&mut self, args: &Json) -> Result<(), Refusal> {
        let Some(Json::Arr(list)) = args.get("regions") else { return Err("BadRequest") };
        if list.is_empty() {
            return Err("NoMemoryRegion");
        }
        let mut out = Vec::new();
        let mut total = 0u64;
        for r in list {
            let base = r.get("base").and_then(Json::u64).ok_or("BadRequest")?;
            let size = r.get("size").and_then(Json::u32).ok_or("BadRequest")?;
            if size == 0 {
                return Err("EmptyRegion");
            }
            if u128::from(base) + u128::from(size) > 1u128 << 64 {
                return Err("RegionOutOfRange");
            }
            total += u64::from(size);
            if total > MAX_TOTAL {
                return Err("ResourceLimit");
            }
            out.push((base, size));
        }
        out.sort();
        if out.windows(2).any(|w| u128::from(w[0].0) + u128::from(w[0].1) > u128::from(w[1].0)) {
            return Err("OverlappingRegions");
        }
        self.regions = Some(out.into_iter().map(|(b, n)| (b, vec![0u8; n as usize])).collect());
        Ok(())
    }

    /// (region index, offset, length) pieces covering [addr, addr+len) across touching regions.
    fn pieces(&self, addr: u64, len: u64) -> Result<Vec<(usize, usize, usize)>, Refusal> {
        let regions = self.regions.as_ref().ok_or("NotConfigured")?;
        let end = u128::from(addr) + u128::from(len);
        if end > 1u128 << 64 {
            return Err("GuestAddressOverflow");
        }
        let (mut at, mut out) = (u128::from(addr), Vec::new());
        while at < end {
            let i = regions
                .iter()
                .position(|(b, m)| u128::from(*b) <= at && at < u128::from(*b) + m.len() as u128)
                .ok_or("InvalidGuestAddress")?;
            let (base, mem) = &regions[i];
            let off = (at - u128::from(*base)) as usize;
            let n = std::cmp::min(mem.len() - off, (end - at) as usize);
            out.push((i, off, n));
            at += n as u128;
        }
        Ok(out)
    }

    fn read(&self, args: &Json) -> Result<String, Refusal> {
        let addr = args.get("addr").and_then(Json::u64).ok_or("BadRequest")?;
        let len = args.get("len").and_then(Json::u32).ok_or("BadRequest")?;
        let regions = self.regions.as_ref();
        let mut hex = String::new();
        for (i, off, n) in self.pieces(addr, u64::from(len))? {
            for b in &regions.ok_or("NotConfigured")?[i].1[off..off + n] {
                hex.push_str(&format!("{b:02x}"));
            }
        }
        Ok(hex)
    }

    fn write(&mut self, args: &Json) -> Result<(), Refusal> {
        let addr = args.get("addr").and_then(Json::u64).ok_or("BadRequest")?;
        let Some(Json::Str(hex)) = args.get("data") else { return Err("BadRequest") };
        if hex.len() % 2 != 0 {
            return Err("BadRequest");
        }
        let data = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "BadRequest")?;
        let pieces = self.pieces(addr, data.len() as u64)?;
        let regions = self.regions.as_mut().ok_or("NotConfigured")?;
        let mut done = 0;
        for (i, off, n) in pieces {
            regions[i].1[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

// ---- the protocol ---------------------------------------------------------------------------

/// The answer's value as JSON text, or a refusal.
fn dispatch(mem: &mut Memory, op: &str, args: &Json) -> Result<String, Refusal> {
    match op {
        "hello" => {
            let ops: Vec<String> = OPS.iter().map(|o| format!("\"{o}\"")).collect();
            Ok(format!("{{\"protocol\":1,\"name\":\"Rust starter adapter\",\"ops\":[{}]}}", ops.join(",")))
        }
        "reset" => {
            *mem = Memory::default();
            Ok("null".into())
        }
        "memory.create" => mem.create(args).map(|()| "null".into()),
        "memory.read" => mem.read(args).map(|hex| format!("{{\"data\":\"{hex}\"}}")),
        "memory.write" => mem.write(args).map(|()| "null".into()),
        _ => Err("Unsupported"),
    }
}

fn main() {
    let mut mem = Memory::default();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let req = Parser { s: line.as_bytes(), i: 0 }.value();
        let id = req.as_ref().and_then(|r| match r.get("id") {
            Some(Json::Num(n)) => n.parse::<i64>().ok(),
            _ => None,
        });
        let op = req.as_ref().and_then(|r| match r.get("op") {
            Some(Json::Str(s)) => Some(s.clone()),
            _ => None,
        });
        let text = match (id, op) {
            (Some(id), Some(op)) => {
                let empty = Json::Obj(BTreeMap::new());
                let args = req.as_ref().and_then(|r| r.get("args")).unwrap_or(&empty);
                match dispatch(&mut mem, &op, args) {
                    Ok(v) => format!("{{\"id\":{id},\"ok\":true,\"value\":{v}}}"),
                    Err(tag) => format!("{{\"id\":{id},\"ok\":false,\"error\":{{\"_tag\":\"{tag}\"}}}}"),
                }
            }
            _ => "{\"id\":-1,\"ok\":false,\"error\":{\"_tag\":\"BadRequest\"}}".into(),
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
