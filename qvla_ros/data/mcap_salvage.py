# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Read what is whole in a damaged MCAP file: the records before the damage, in file order.

A recorder that crashes leaves an MCAP file with no summary, footer or end magic, often cut
inside a record; readers that start from the footer (rosbags) refuse it whole. This reader
walks the records from the start (MCAP spec: opcode uint8, length uint64, content; chunks hold
records of their own) and stops at the first record that is cut short or does not parse, and
says where. Only what the importer needs is decoded: schemas' names, channels and messages.
"""

from dataclasses import dataclass, field
from pathlib import Path
import struct
from typing import Dict, List, Tuple

MAGIC = b'\x89MCAP0\r\n'
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x03, 0x04, 0x05, 0x06


class Damaged(Exception):
    """A record is cut short or malformed (internal: ends the walk)."""


@dataclass
class Salvage:
    """What a walk over one MCAP file recovered, and where it stopped."""

    path: Path
    file_size: int
    bytes_read: int = 0
    topics: Dict[int, Tuple[str, str]] = field(default_factory=dict)  # id: (topic, type)
    messages: List[Tuple[int, int, bytes]] = field(default_factory=list)  # (id, ns, cdr)
    problem: str = ''

    @property
    def whole(self) -> bool:
        """Whether the walk reached the end of the data without damage."""
        return not self.problem


def _take(buf: memoryview, pos: int, size: int) -> Tuple[memoryview, int]:
    if size < 0 or pos + size > len(buf):
        raise Damaged(f'a field of {size} bytes at byte {pos} runs past the end')
    return buf[pos:pos + size], pos + size


def _string(buf: memoryview, pos: int) -> Tuple[str, int]:
    raw, pos = _take(buf, pos, 4)
    text, pos = _take(buf, pos, struct.unpack('<I', raw)[0])
    try:
        return bytes(text).decode(), pos
    except UnicodeDecodeError:
        raise Damaged(f'a string at byte {pos} is not UTF-8') from None


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == '':
        return data
    try:  # rosbags reads zstd and lz4 chunks; reuse its decoders when it has them
        from rosbags.rosbag2.storage_mcap import decompress
        return decompress(data, compression, size, 0)
    except Exception as err:  # noqa: B902 - any decoder failure means a damaged chunk
        raise Damaged(f'a {compression or "plain"} chunk does not decompress ({err})') from None


def _records(buf: memoryview, out: Salvage, schemas: Dict[int, str], top: bool) -> None:
    """Walk the records of ``buf``; at top level, advance ``out.bytes_read`` per record."""
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 9:
            raise Damaged(f'a record header at byte {pos} is cut short')
        op, size = buf[pos], struct.unpack('<Q', buf[pos + 1:pos + 9])[0]
        body, end = _take(buf, pos + 9, size)
        if op == OP_SCHEMA:
            sid = struct.unpack('<H', body[:2])[0]
            schemas[sid], _ = _string(body, 2)
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack('<HH', body[:4])
            topic, _ = _string(body, 4)
            out.topics[cid] = (topic, schemas.get(sid, ''))
        elif op == OP_MESSAGE:
            if size < 22:
                raise Damaged(f'a message record at byte {pos} is {size} bytes long')
            cid, _, log_time = struct.unpack('<HIQ', body[:14])
            out.messages.append((cid, log_time, bytes(body[22:])))
        elif op == OP_CHUNK:
            _, _, raw_size, _ = struct.unpack('<QQQI', body[:28])
            compression, p = _string(body, 28)
            length, p = _take(body, p, 8)
            data, _ = _take(body, p, struct.unpack('<Q', length)[0])
            _records(memoryview(_decompress(bytes(data), compression, raw_size)), out,
                     schemas, top=False)
        pos = end
        if top:
            out.bytes_read = pos + len(MAGIC)


def salvage(path: Path) -> Salvage:
    """Return every schema, channel and message before the first damaged record of ``path``.

    Messages come in file order with their log time. A file that is not MCAP at all is a
    Salvage with nothing read and the reason in ``problem``.
    """
    path = Path(path)
    data = path.read_bytes()
    out = Salvage(path, len(data))
    if not data.startswith(MAGIC):
        out.problem = 'no MCAP magic at the start of the file'
        return out
    body = data[len(MAGIC):]
    if body.endswith(MAGIC):  # a whole file: the trailing magic is not a record
        body = body[:-len(MAGIC)]
    try:
        _records(memoryview(body), out, {}, top=True)
    except (Damaged, struct.error) as err:
        out.problem = str(err)
    return out
