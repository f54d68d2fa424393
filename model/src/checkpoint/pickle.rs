//! A restricted pickle reader: enough of protocols 2-5 for a PyTorch `state_dict`, and nothing
//! that runs code. Only a fixed list of globals is accepted (OrderedDict, the tensor rebuild
//! functions, the storage classes); anything else is an error naming the global.
//!
//! Values live in an arena and refer to each other by index, so memory is linear in the input,
//! a memo `GET` copies an index, and no input can build a structure whose drop recurses deeply.

use super::DType;

/// Index of a node in [`Pickle::nodes`].
pub type Id = usize;

/// A value produced by the unpickler.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A larger integer (little-endian two's complement bytes), e.g. PyTorch's legacy magic.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A list.
    List(Vec<Id>),
    /// A dict (insertion order kept).
    Dict(Vec<(Id, Id)>),
    /// An allowed global: module and name.
    Global(Box<[String; 2]>),
    /// A PyTorch storage reference (from a persistent id).
    Storage(Box<StorageRef>),
    /// A tensor view of a storage.
    Tensor(Box<TensorRef>),
}

/// A PyTorch storage reference (boxed in [`Value`] so every node stays four words).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: DType,
    /// The storage's key (file name in the archive).
    pub key: String,
    /// Elements in the storage.
    pub numel: usize,
}

/// A tensor view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage node.
    pub storage: Id,
    /// Offset in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// A parsed pickle: the node arena and the root.
#[derive(Debug)]
pub struct Pickle {
    /// All nodes.
    pub nodes: Vec<Value>,
    /// The unpickled object.
    pub root: Id,
    /// Bytes consumed (the position after STOP).
    pub consumed: usize,
}

/// Resource limits of the unpickler.
#[derive(Clone, Copy, Debug)]
pub struct PickleLimits {
    /// Most nodes created (defaults to half the input length plus 4096: every opcode that makes
    /// a node but a 1-byte empty container takes two bytes or more, and None, True and False
    /// are shared, so the parser's memory stays within a small multiple of the pickle's size).
    pub max_nodes: usize,
}

const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("__builtin__", "set"),
];

fn storage_dtype(module: &str, name: &str) -> Option<DType> {
    if module != "torch" {
        return None;
    }
    Some(match name {
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// The MARK entry on the stack (no node has this id).
const MARK: Id = Id::MAX;

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Value>,
    stack: Vec<Id>,
    /// The shared nodes of the immutable singletons None, False and True, once created.
    singletons: [Option<Id>; 3],
    memo: std::collections::HashMap<u32, Id>,
    limits: PickleLimits,
}

type R<T> = std::result::Result<T, String>;

impl<'a> Vm<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.data.len() - self.pos {
            return Err(format!("pickle truncated at byte {} (needs {n} more)", self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn len64(&mut self) -> R<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }
    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("unterminated text line in pickle")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "non-UTF-8 text in pickle".to_string())
    }
    fn new_node(&mut self, v: Value) -> R<Id> {
        if self.nodes.len() >= self.limits.max_nodes {
            return Err("pickle creates too many objects".into());
        }
        self.nodes.push(v);
        Ok(self.nodes.len() - 1)
    }
    fn push(&mut self, v: Value) -> R<()> {
        let id = self.new_node(v)?;
        self.stack.push(id);
        Ok(())
    }
    /// Pushes the shared node of an immutable singleton: a run of `None`s costs no nodes.
    fn singleton(&mut self, slot: usize, v: Value) -> R<()> {
        let id = match self.singletons[slot] {
            Some(id) => id,
            None => self.new_node(v)?,
        };
        self.singletons[slot] = Some(id);
        self.stack.push(id);
        Ok(())
    }
    fn pop(&mut self) -> R<Id> {
        match self.stack.pop() {
            Some(MARK) => Err("unexpected MARK on the pickle stack".into()),
            Some(id) => Ok(id),
            None => Err("pickle stack underflow".into()),
        }
    }
    fn top(&self) -> R<Id> {
        match self.stack.last() {
            Some(&id) if id != MARK => Ok(id),
            _ => Err("pickle stack underflow".into()),
        }
    }
    fn pop_mark(&mut self) -> R<Vec<Id>> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(MARK) => break,
                Some(id) => items.push(id),
                None => return Err("MARK not found on the pickle stack".into()),
            }
        }
        items.reverse();
        Ok(items)
    }
    fn memo_put(&mut self, k: u32) -> R<()> {
        let id = self.top()?;
        if self.memo.len() >= self.limits.max_nodes {
            return Err("pickle memo too large".into());
        }
        self.memo.insert(k, id);
        Ok(())
    }
    fn memo_get(&mut self, k: u32) -> R<()> {
        let id = *self.memo.get(&k).ok_or_else(|| format!("pickle memo key {k} not defined"))?;
        self.stack.push(id);
        Ok(())
    }
    fn str_node(&mut self, b: &[u8]) -> R<()> {
        let s = std::str::from_utf8(b).map_err(|_| "non-UTF-8 string in pickle".to_string())?;
        self.push(Value::Str(s.to_string()))
    }
    fn int(&self, id: Id) -> R<i64> {
        match &self.nodes[id] {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            v => Err(format!("expected an integer, got {}", kind(v))),
        }
    }
    fn usize_list(&self, id: Id, what: &str) -> R<Vec<usize>> {
        let items = match &self.nodes[id] {
            Value::Tuple(v) | Value::List(v) => v,
            v => return Err(format!("{what}: expected a tuple, got {}", kind(v))),
        };
        // Checked before copying: one long tuple shared by many tensors must not cost each a copy.
        if items.len() > super::MAX_RANK {
            return Err(format!("{what}: {} dimensions (at most {} are read)", items.len(), super::MAX_RANK));
        }
        items
            .iter()
            .map(|&i| {
                let v = self.int(i)?;
                usize::try_from(v).map_err(|_| format!("{what}: negative value {v}"))
            })
            .collect()
    }
    fn tuple_items(&self, id: Id, what: &str) -> R<Vec<Id>> {
        match &self.nodes[id] {
            Value::Tuple(v) => Ok(v.clone()),
            v => Err(format!("{what}: expected a tuple, got {}", kind(v))),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> R<()> {
        if storage_dtype(module, name).is_some() || ALLOWED.contains(&(module, name)) {
            self.push(Value::Global(Box::new([module.to_string(), name.to_string()])))
        } else {
            Err(format!("unsupported pickle global {module}.{name} (only state_dict contents are read)"))
        }
    }

    fn persistent(&mut self, pid: Id) -> R<Id> {
        let items = self.tuple_items(pid, "persistent id")?;
        let tag = items.first().map(|&i| &self.nodes[i]);
        if tag != Some(&Value::Str("storage".into())) || items.len() < 5 {
            return Err("unsupported persistent id (expected a PyTorch storage)".into());
        }
        let dtype = match &self.nodes[items[1]] {
            Value::Global(g) => {
                let [m, n] = &**g;
                storage_dtype(m, n).ok_or_else(|| format!("unsupported storage type {m}.{n}"))?
            }
            v => return Err(format!("storage type: expected a class, got {}", kind(v))),
        };
        let key = match &self.nodes[items[2]] {
            Value::Str(s) => s.clone(),
            v => return Err(format!("storage key: expected a string, got {}", kind(v))),
        };
        let numel = usize::try_from(self.int(items[4])?).map_err(|_| "negative storage size".to_string())?;
        self.new_node(Value::Storage(Box::new(StorageRef { dtype, key, numel })))
    }

    fn reduce(&mut self, func: Id, args: Id) -> R<Id> {
        let (m, n) = match &self.nodes[func] {
            Value::Global(g) => (g[0].clone(), g[1].clone()),
            v => return Err(format!("REDUCE on a non-callable {}", kind(v))),
        };
        let a = self.tuple_items(args, &format!("arguments of {m}.{n}"))?;
        match (m.as_str(), n.as_str()) {
            ("collections", "OrderedDict") => self.new_node(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if a.len() < 4 {
                    return Err(format!("{n}: expected at least 4 arguments, got {}", a.len()));
                }
                if !matches!(self.nodes[a[0]], Value::Storage(_)) {
                    return Err(format!("{n}: first argument is not a storage"));
                }
                let offset = usize::try_from(self.int(a[1])?).map_err(|_| "negative storage offset".to_string())?;
                let shape = self.usize_list(a[2], "tensor size")?;
                let stride = self.usize_list(a[3], "tensor stride")?;
                self.new_node(Value::Tensor(Box::new(TensorRef { storage: a[0], offset, shape, stride })))
            }
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                a.first().copied().ok_or_else(|| format!("{n}: no arguments"))
            }
            ("_codecs", "encode") => {
                let s = match a.first().map(|&i| &self.nodes[i]) {
                    Some(Value::Str(s)) => s.clone(),
                    _ => return Err("_codecs.encode: expected a string".into()),
                };
                // Protocol-2 pickles encode bytes as latin-1 text.
                let b: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
                self.new_node(Value::Bytes(b))
            }
            ("builtins", "set") | ("__builtin__", "set") => self.new_node(Value::List(Vec::new())),
            _ => Err(format!("calling {m}.{n} is not supported")),
        }
    }

    fn run(&mut self) -> R<Id> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(MARK),
                b'N' => self.singleton(0, Value::None)?,
                0x88 => self.singleton(2, Value::Bool(true))?,
                0x89 => self.singleton(1, Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let b = self.take(n)?.to_vec();
                    let v = if n <= 8 {
                        let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                        buf[..n].copy_from_slice(&b);
                        Value::Int(i64::from_le_bytes(buf))
                    } else {
                        Value::BigInt(b)
                    };
                    self.push(v)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.str_node(b)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.str_node(b)?
                }
                0x8d => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.str_node(b)?
                }
                b'T' | b'U' => {
                    // Python-2 byte strings: latin-1 text in practice.
                    let n = if op == b'T' { self.u32()? as usize } else { self.u8()? as usize };
                    let b = self.take(n)?;
                    let s: String = b.iter().map(|&c| c as char).collect();
                    self.push(Value::Str(s))?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("DICT with an odd number of items".into());
                    }
                    let pairs = items.chunks(2).map(|p| (p[0], p[1])).collect();
                    self.push(Value::Dict(pairs))?
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append(l, &[v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append(l, &items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, &[k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let d = self.top()?;
                    self.set_items(d, &items)?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.global(&module, &name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.nodes[module], &self.nodes[name]) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.global(&m, &n)?
                        }
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let id = self.persistent(pid)?;
                    self.stack.push(id)
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let id = self.reduce(func, args)?;
                    self.stack.push(id)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args) for the allowed container classes.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let id = self.reduce(cls, args)?;
                    self.stack.push(id)
                }
                b'b' => {
                    // BUILD: OrderedDict's `_metadata` and tensor states carry nothing we need.
                    let _state = self.pop()?;
                    let target = self.top()?;
                    match &self.nodes[target] {
                        Value::Dict(_) | Value::Tensor(_) | Value::List(_) => {}
                        v => return Err(format!("BUILD on an unsupported object ({})", kind(v))),
                    }
                }
                b'0' => {
                    self.stack.pop().ok_or("POP on an empty stack")?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(id)
                }
                _ => return Err(format!("unsupported pickle opcode 0x{op:02x} at byte {}", self.pos - 1)),
            }
        }
    }

    fn append(&mut self, list: Id, items: &[Id]) -> R<()> {
        match &mut self.nodes[list] {
            Value::List(v) => {
                v.extend_from_slice(items);
                Ok(())
            }
            v => Err(format!("APPEND to a non-list ({})", kind(v))),
        }
    }

    fn set_items(&mut self, dict: Id, items: &[Id]) -> R<()> {
        match &mut self.nodes[dict] {
            Value::Dict(v) => {
                v.extend(items.chunks(2).map(|p| (p[0], p[1])));
                Ok(())
            }
            v => Err(format!("SETITEM on a non-dict ({})", kind(v))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(_) => "class",
        Value::Storage(_) => "storage",
        Value::Tensor(_) => "tensor",
    }
}

/// Unpickles the first pickle in `data`; errors are plain descriptions (the caller adds the file).
pub fn unpickle(data: &[u8], limits: Option<PickleLimits>) -> std::result::Result<Pickle, String> {
    let limits = limits.unwrap_or(PickleLimits { max_nodes: data.len() / 2 + 4096 });
    let mut vm = Vm {
        data,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        singletons: [None; 3],
        memo: std::collections::HashMap::new(),
        limits,
    };
    let root = vm.run()?;
    Ok(Pickle { nodes: vm.nodes, root, consumed: vm.pos })
}
