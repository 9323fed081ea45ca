"""The daemon's end of a worker's socket frames as multiprocessing's Connection does (the
worker's end, and the independent implementation here), on the event loop."""

from __future__ import annotations

import asyncio
import socket
from multiprocessing.connection import Connection

import pytest

from cert_agent.agent.workers.channels import SocketChannel


async def _open() -> tuple[SocketChannel, Connection, asyncio.Queue[bytes], asyncio.Event]:
    ours, theirs = socket.socketpair()
    frames: asyncio.Queue[bytes] = asyncio.Queue()
    closed = asyncio.Event()
    channel = SocketChannel(ours, frames.put_nowait, closed.set)
    return channel, Connection(theirs.detach()), frames, closed


async def test_frames_cross_both_ways_whole_and_in_order_whatever_their_size() -> None:
    channel, peer, frames, _ = await _open()
    sizes = [0, 1, 3, 4, 5, 1000, 70_000, 300_000]
    try:
        loop = asyncio.get_running_loop()
        received = loop.run_in_executor(None, lambda: [peer.recv_bytes() for _ in sizes])
        for size in sizes:
            await channel.send(bytes([size % 251]) * size)
        assert await asyncio.wait_for(received, 10) == [bytes([size % 251]) * size for size in sizes]

        def send_all() -> None:
            for n in sizes:
                peer.send_bytes(bytes([n % 13]) * n)

        sent = loop.run_in_executor(None, send_all)
        for size in sizes:
            assert await asyncio.wait_for(frames.get(), 10) == bytes([size % 13]) * size
        await sent
    finally:
        channel.close()
        peer.close()


async def test_the_end_of_the_workers_socket_is_told_once_and_sending_then_fails() -> None:
    channel, peer, _, closed = await _open()
    peer.close()
    await asyncio.wait_for(closed.wait(), 10)
    with pytest.raises(OSError):
        await channel.send(b"after the end")
    channel.close()  # a second close changes nothing


async def test_a_length_no_worker_sends_closes_the_channel() -> None:
    channel, peer, frames, closed = await _open()
    try:
        raw = socket.socket(fileno=peer.fileno())
        raw.sendall((-5).to_bytes(4, "big", signed=True) + b"junk")
        raw.detach()
        await asyncio.wait_for(closed.wait(), 10)
        assert frames.empty()
        with pytest.raises(OSError):
            await channel.send(b"after the end")
    finally:
        peer.close()


async def test_a_frame_given_up_midway_still_goes_out_whole_and_one_given_up_before_not_at_all() -> None:
    channel, peer, _, _ = await _open()
    loop = asyncio.get_running_loop()
    # Frames larger than the socket's buffer go out in parts while the others wait their turn.
    # The first sender gives up half-way (its caller timed out): its frame still goes out whole,
    # before the next. The third gives up while waiting: its frame is not sent at all.
    frames = [bytes([n]) * (n * 1_000_000 + 1) for n in range(1, 7)]
    expected = [frame for n, frame in enumerate(frames) if n != 2]
    try:
        received = loop.run_in_executor(None, lambda: [peer.recv_bytes() for _ in expected])
        sends = [asyncio.ensure_future(channel.send(frame)) for frame in frames]
        await asyncio.sleep(0)
        sends[0].cancel()
        sends[2].cancel()
        results = await asyncio.gather(*sends, return_exceptions=True)
        assert [isinstance(r, asyncio.CancelledError) for r in results] == [True, False, True, False, False, False]
        assert await asyncio.wait_for(received, 20) == expected  # whole, in order, none mixed
    finally:
        channel.close()
        peer.close()
