"""Builds tests/data/hostile/: small crafted files that once made diffinv allocate without
bound (issue 20). Plain Python (pickle, zlib, struct): the pickles are what torch.save writes,
made with stand-ins for torch's classes so torch is not needed.

usage: python3 scripts/make_hostile_fixtures.py

| file | what it claims |
|---|---|
| zip64_lie.pt | a torch zip whose storage entry's ZIP64 sizes claim 1 TiB (431 bytes) |
| deflated_nones.pt | a torch zip whose data.pkl deflates to 32 M `None`s (32 MB from 33 KB) |
| shared_shape.pt | 400 tensors sharing one 20000-dimension shape tuple (memoised once) |
| zero_stride.pt | `x` of shape 1x3x65536x65536 with stride 0 over one float |
"""
import collections, io, os, pickle, struct, sys, types, zlib

OUT = os.path.join(os.path.dirname(__file__), "../tests/data/hostile")

# Stand-ins pickled under torch's names, as torch.save's pickler writes them.
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage
torch._utils = utils
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, key, numel, offset, size, stride):
        self.args = (StorageRef(key, numel), offset, size, stride)

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args + (False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(state):
    b = io.BytesIO()
    TorchPickler(b, protocol=2).dump(state)
    return b.getvalue()


def zip_archive(entries):
    """A zip of (name, stored bytes, method, declared compressed, declared uncompressed, crc);
    sizes over 32 bits go in ZIP64 extra fields, as a real ZIP64 writer puts them."""
    local, central = io.BytesIO(), io.BytesIO()
    for name, data, method, csize, usize, crc in entries:
        name = name.encode()
        big = csize > 0xFFFFFFFE or usize > 0xFFFFFFFE
        extra = struct.pack("<HHQQ", 1, 16, usize, csize) if big else b""
        c32, u32 = (0xFFFFFFFF, 0xFFFFFFFF) if big else (csize, usize)
        offset = local.tell()
        local.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0, crc, c32, u32, len(name), len(extra)))
        local.write(name + extra + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0, crc, c32, u32,
                                  len(name), len(extra), 0, 0, 0, 0, offset))
        central.write(name + extra)
    cd = central.getvalue()
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), local.tell(), 0)
    return local.getvalue() + cd + eocd


def stored(name, data):
    return (name, data, 0, len(data), len(data), zlib.crc32(data))


def torch_zip(pkl, storages, pkl_method=0):
    entries = []
    if pkl_method == 8:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        z = c.compress(pkl) + c.flush()
        entries.append(("archive/data.pkl", z, 8, len(z), len(pkl), zlib.crc32(pkl)))
    else:
        entries.append(stored("archive/data.pkl", pkl))
    entries.append(stored("archive/byteorder", b"little"))
    entries += storages
    entries.append(stored("archive/version", b"3\n"))
    return zip_archive(entries)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    four = struct.pack("<4f", 1, 2, 3, 4)
    one = Tensor("0", 4, 0, (4,), (1,))

    # A deflated storage entry whose ZIP64 sizes claim 1 TiB (compressed: 1 GiB).
    pkl = torch_pickle({"w": one})
    lie = ("archive/data/0", zlib.compress(four)[2:-4], 8, 1 << 30, 1 << 40, zlib.crc32(four))
    write("zip64_lie.pt", torch_zip(pkl, [lie]))

    # 32 M NONE opcodes, deflated.
    nones = b"\x80\x02" + b"N" * (32 << 20) + b"."
    write("deflated_nones.pt", torch_zip(nones, [stored("archive/data/0", four)], pkl_method=8))

    # One long shape tuple memoised once and fetched by every tensor.
    dims = 20000
    size, stride = (1,) * dims, (1,) * dims
    state = collections.OrderedDict((f"t{i}", Tensor("0", 4, 0, size, stride)) for i in range(400))
    write("shared_shape.pt", torch_zip(torch_pickle(state), [stored("archive/data/0", four)]))

    # A zero-stride view: 12.9 G elements over one float.
    x = Tensor("0", 1, 0, (1, 3, 65536, 65536), (0, 0, 0, 0))
    write("zero_stride.pt", torch_zip(torch_pickle({"x": x}), [stored("archive/data/0", four[:4])]))


if __name__ == "__main__":
    main()
