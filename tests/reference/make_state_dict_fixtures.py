#!/usr/bin/python3
"""Reference files for tests/checkpoint_tensor_io_test.cpp, written by Debian's python3-torch (1.13).

    make_state_dict_fixtures.py fixtures OUTDIR
        OUTDIR/model_state.pt        torch.save(model.state_dict()) of Conv2d + BatchNorm2d + Linear
        OUTDIR/model_state_p4.pt     the same with pickle_protocol=4
        OUTDIR/plain.pt              a plain dict: views, transposes, storage offsets, shared storages, every dtype,
                                     non-tensor values
        OUTDIR/<name>.expected.safetensors
                                     the same tensors, contiguous, in a safetensors file written here by hand
                                     (not by traindx), with __metadata__["order"] = JSON list of the keys in dict order
        OUTDIR/evil.pt               a pickle whose __reduce__ calls os.system (must be refused, never run)
        OUTDIR/module.pt             torch.save(model): pickles the module class (must be refused)
        OUTDIR/compressed.pt         model_state.pt re-zipped with deflate
        OUTDIR/traversal_dotdot.pt   model_state.pt plus a member named ../../evil
        OUTDIR/traversal_absolute.pt model_state.pt plus a member named /tmp/evil
        OUTDIR/nested.pt             {"model": state_dict, "epoch": 3}: tensors only in a nested dict

    make_state_dict_fixtures.py resave FILE.safetensors OUT.pt
        Parses a safetensors file by hand, asserting the layout the spec and the reference writer promise (u64 LE
        header length, JSON header padded with spaces to a multiple of 8, data offsets contiguous and covering the
        data section, each tensor aligned to its element size), then torch.save()s its tensors as a dict in file
        order, so the C++ test can read them back through the torch.save reader.

Seeds are fixed; the files are regenerated at test time into a temporary directory.
"""
import io
import json
import os
import struct
import sys
import zipfile

import torch

DTYPES = {
    torch.float64: ("F64", 8), torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
    torch.int64: ("I64", 8), torch.int32: ("I32", 4), torch.int16: ("I16", 2), torch.int8: ("I8", 1),
    torch.uint8: ("U8", 1), torch.bool: ("BOOL", 1),
}
BY_NAME = {name: (dtype, size) for dtype, (name, size) in DTYPES.items()}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class Evil:
    """Pickles as a call to os.system: what a malicious checkpoint looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def tensor_bytes(t):
    return t.contiguous().flatten().view(torch.uint8).numpy().tobytes()


def write_expected(path, tensors):
    """A safetensors file written by hand from the spec: independent of traindx's writer."""
    header = {"__metadata__": {"order": json.dumps(list(tensors))}}
    data = bytearray()
    for name, t in tensors.items():
        dtype, _ = DTYPES[t.dtype]
        b = tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def rezip(src, dst, compression=zipfile.ZIP_STORED, extra=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        for name, data in (extra or {}).items():
            zout.writestr(zipfile.ZipInfo(name), data)


def fixtures(out):
    torch.manual_seed(1234)
    model = Net()
    model.train()
    for _ in range(3):  # moves the BatchNorm running stats and counts num_batches_tracked to 3
        model(torch.randn(5, 1, 4, 4))
    state = model.state_dict()
    torch.save(state, os.path.join(out, "model_state.pt"))
    # Protocol 4 adds FRAME, SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL; same tensors, same expected file.
    torch.save(state, os.path.join(out, "model_state_p4.pt"), pickle_protocol=4)
    write_expected(os.path.join(out, "model_state.expected.safetensors"), dict(state))

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    base[0, 1] = float("nan")
    base[0, 2] = -0.0
    base[0, 3] = float("inf")
    shared = torch.arange(10, dtype=torch.int64)
    cube = torch.randn(2, 3, 4, dtype=torch.float64)
    param = torch.nn.Parameter(torch.randn(3))
    plain = {
        "transposed": base.t(),                      # non-contiguous
        "view_offset": base[1:, 2:],                 # storage offset 8, row stride 6
        "every_other": base[:, ::2],                 # stride 2 in the last dimension
        "expanded": torch.tensor([1.5, -2.5, 3.5]).expand(2, 3),  # stride 0
        "permuted": cube.permute(2, 0, 1),
        "shared_a": shared,
        "shared_b": shared[3:7],                     # same storage as shared_a, offset 3
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "f16": torch.randn(2, 3).half(),
        "bf16": torch.randn(5).bfloat16(),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 0], dtype=torch.int32),
        "i16": torch.tensor([-(2**15), 2**15 - 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 5], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "i64_big": torch.tensor([-(2**63), 2**63 - 1], dtype=torch.int64),
        "param": param,                              # saved through _rebuild_parameter
        "note": "not a tensor",
        "step": 7,
        "nested": {"lr": 0.1},
    }
    torch.save(plain, os.path.join(out, "plain.pt"))
    expected = {k: v.detach() for k, v in plain.items() if isinstance(v, torch.Tensor)}
    write_expected(os.path.join(out, "plain.expected.safetensors"), expected)

    torch.save({"x": Evil(os.path.join(out, "pwned"))}, os.path.join(out, "evil.pt"))
    torch.save(model, os.path.join(out, "module.pt"))
    torch.save({"model": state, "epoch": 3}, os.path.join(out, "nested.pt"))

    src = os.path.join(out, "model_state.pt")
    rezip(src, os.path.join(out, "compressed.pt"), compression=zipfile.ZIP_DEFLATED)
    rezip(src, os.path.join(out, "traversal_dotdot.pt"), extra={"model_state/../../evil": b"x"})
    rezip(src, os.path.join(out, "traversal_absolute.pt"), extra={"/tmp/evil": b"x"})


def resave(path, out):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    text = blob[8:8 + n]
    assert text.startswith(b"{"), "header does not start with '{'"
    assert text.rstrip(b" ") == text.rstrip(), "header padding is not spaces"
    header = json.loads(text)
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    data = blob[8 + n:]
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    offset = 0
    tensors = {}
    for name, info in entries:
        dtype, size = BY_NAME[info["dtype"]]
        begin, end = info["data_offsets"]
        assert begin == offset, f"{name}: starts at {begin}, expected {offset}"
        assert begin % size == 0, f"{name}: offset {begin} not aligned to {size} bytes"
        count = 1
        for d in info["shape"]:
            count *= d
        assert end - begin == count * size, f"{name}: {end - begin} bytes for {count} x {size}"
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
        offset = end
    assert offset == len(data), f"tensors cover {offset} of {len(data)} data bytes"
    torch.save(tensors, out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "resave":
        resave(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
