"""Redis state (`state: redis://host:port/db`): the same behaviour as the SQLite store, shared by
every process and machine that points at the same Redis database.

Key layout, all under PREFIX ("mde:"):

    mde:kv:<ns>:<key>     string    a cached value; its own PX expiry when it has a TTL
    mde:kvidx:<ns>        zset      the keys of one namespace; score = expiry in server ms
                                    (+inf for persistent keys), so `keys` is one cheap,
                                    atomic read instead of a SCAN over the whole database
    mde:rate:<bucket>     zset      sliding-window log of granted calls; score = grant time
                                    in server microseconds; expires after the longest window
    mde:pause:<bucket>    string    the pause's until-time in server microseconds
    mde:lease:<name>      string    the lease holder; PX expiry = the lease's TTL

<ns> is percent-encoded, so a namespace never contains ':' or a glob character and one
namespace can never read into another ("tok" vs "tok:x").

Every read-then-write is one Lua script, registered once per store: Redis runs a script
atomically, so no two processes can both see a free slot and take it. Times come from the
Redis server's own clock (`TIME`), so machines with skewed clocks still share one window.
Needs Redis server >= 5 (scripts that write after `TIME`).

`import redis` happens only when a RedisStore is built: a SQLite run never pays for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from integration.config import redact_url
from integration.errors import ConfigError, NetworkError
from integration.state import Limits

PREFIX = "mde:"
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
RETRIES = 2  # redis-py retries a dropped connection this often before we see the error

# Fixed-point formatting for numbers handed to Redis from Lua: Lua 5.1's own number-to-string
# conversion keeps 14 digits only, and a microsecond timestamp has 16.
_LUA_PRELUDE = """
local function s(x) return string.format('%.0f', x) end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: log zset, pause key. ARGV: nonce, longest window (us), then (window us, allowed)...
# Returns 0 when a slot was taken, else the microseconds until one may free.
TAKE_SLOT_LUA = _LUA_PRELUDE + """
local now = now_us()
local longest = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', s(now - longest))
local wait = 0
local paused_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused_until > now then wait = paused_until - now end
for i = 3, #ARGV, 2 do
  local window = tonumber(ARGV[i])
  local allowed = tonumber(ARGV[i + 1])
  local floor = '(' .. s(now - window)
  local count = redis.call('ZCOUNT', KEYS[1], floor, '+inf')
  if count >= allowed then
    if allowed <= 0 then
      wait = math.max(wait, window)
    else
      -- The call that must age out before one more fits in this window.
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], floor, '+inf', 'WITHSCORES',
                                'LIMIT', count - allowed, 1)
      wait = math.max(wait, tonumber(oldest[2]) + window - now)
    end
  end
end
if wait > 0 then return wait end
-- Unique member: two grants in the same microsecond are two entries, not one.
redis.call('ZADD', KEYS[1], s(now), s(now) .. '-' .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], s(math.ceil(longest / 1000) + 1))
return 0
"""

# KEYS: pause key. ARGV: seconds (us). Extends the until-time, never shortens it.
PAUSE_LUA = _LUA_PRELUDE + """
local seconds = tonumber(ARGV[1])
if seconds <= 0 then return 0 end
local now = now_us()
local until_us = now + seconds
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= until_us then return 0 end
redis.call('SET', KEYS[1], s(until_us), 'PX', s(math.ceil(seconds / 1000) + 1))
return 1
"""

# KEYS: data key, index zset. ARGV: value, TTL in ms ('' = persistent), key within namespace.
PUT_LUA = _LUA_PRELUDE + """
local now_ms = math.floor(now_us() / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', s(now_ms))
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], '+inf', ARGV[3])
else
  local ttl = tonumber(ARGV[2])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', s(ttl))
  redis.call('ZADD', KEYS[2], s(now_ms + ttl), ARGV[3])
end
-- The index lives as long as its longest-lived key.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] == 'inf' then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[2], s(tonumber(last[2]) + 1))
end
return 1
"""

# KEYS: index zset. ARGV: data key prefix of the namespace. Returns the live keys.
# The data key's own existence is the truth (it may also have been evicted or deleted by hand);
# index entries whose key is gone are dropped on the way.
KEYS_LUA = _LUA_PRELUDE + """
local now_ms = math.floor(now_us() / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', s(now_ms))
local live = {}
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. key) == 1 then
    table.insert(live, key)
  else
    redis.call('ZREM', KEYS[1], key)
  end
end
return live
"""

# KEYS: lease key. ARGV: owner, TTL in ms. Take when free, renew only when ours.
TRY_LEASE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease key. ARGV: owner. Only the holder may release.
RELEASE_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _us(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(f"config key 'state': {self.url} needs the redis package; "
                              "install mde-enrich[redis]") from None
        self._exceptions = redis.exceptions
        try:
            self._redis = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES))
        except (ValueError, redis.exceptions.RedisError) as exc:
            raise ConfigError(f"config key 'state': invalid Redis state URL {self.url}: "
                              f"{self._clean(exc)}") from None
        # Fail closed: unreachable shared state is a configuration error, never a silent
        # per-process budget (N workers would each spend the whole tenant's budget).
        try:
            self._redis.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            self._redis.close()
            raise ConfigError(f"config key 'state': cannot use the Redis state at {self.url}: "
                              f"{self._clean(exc)}") from None
        self._take_slot = self._redis.register_script(TAKE_SLOT_LUA)
        self._pause = self._redis.register_script(PAUSE_LUA)
        self._put = self._redis.register_script(PUT_LUA)
        self._keys = self._redis.register_script(KEYS_LUA)
        self._try_lease = self._redis.register_script(TRY_LEASE_LUA)
        self._release_lease = self._redis.register_script(RELEASE_LEASE_LUA)

    # -- the StateStore protocol ----------------------------------------------------------

    def get(self, namespace: str, key: str) -> str | None:
        with self._talking("read"):
            value = self._redis.get(self._data_key(namespace, key))
        return value if value is None or isinstance(value, str) else value.decode()

    def put(self, namespace: str, key: str, value: str, ttl_s: float | None = None) -> None:
        if ttl_s is not None and ttl_s <= 0:  # already expired: as if never written
            self.delete(namespace, key)
            return
        ttl = "" if ttl_s is None else str(_ms(ttl_s))
        with self._talking("write"):
            self._put(keys=[self._data_key(namespace, key), self._index_key(namespace)],
                      args=[value, ttl, key])

    def delete(self, namespace: str, key: str) -> None:
        with self._talking("write"), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._data_key(namespace, key))
            pipe.zrem(self._index_key(namespace), key)
            pipe.execute()

    def keys(self, namespace: str) -> list[str]:
        with self._talking("read"):
            live: list[str] = self._keys(keys=[self._index_key(namespace)],
                                         args=[self._data_key(namespace, "")])
        return live

    def take_slot(self, bucket: str, limits: Limits) -> float:
        longest = max(window for window, _ in limits)
        args: list[Any] = [os.urandom(8).hex(), _us(longest)]
        for window, allowed in limits:
            args += [_us(window), int(allowed)]
        # A reply lost to a timeout and retried may take two slots for one call: the budget
        # errs on the side of calling Defender less, never more.
        with self._talking("rate budget"):
            wait_us = int(self._take_slot(keys=self._bucket_keys(bucket), args=args))
        return wait_us / 1_000_000

    def pause(self, bucket: str, seconds: float) -> None:
        with self._talking("rate budget"):
            self._pause(keys=[self._bucket_keys(bucket)[1]], args=[_us(seconds)])

    def pause_remaining(self, bucket: str) -> float:
        with self._talking("rate budget"):
            until, now = self._redis.get(self._bucket_keys(bucket)[1]), self._redis.time()
        if not until:
            return 0.0
        # The pause is kept in the server's microseconds, like every time the budget uses.
        return max(0.0, (int(until) - (now[0] * 1_000_000 + now[1])) / 1_000_000)

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        with self._talking("lease"):
            return bool(self._try_lease(keys=[f"{PREFIX}lease:{name}"],
                                        args=[owner, _ms(ttl_s)]))

    def release_lease(self, name: str, owner: str) -> None:
        with self._talking("lease"):
            self._release_lease(keys=[f"{PREFIX}lease:{name}"], args=[owner])

    def close(self) -> None:
        self._redis.close()

    def streams(self) -> RedisStreams:
        """The alert streams of a worker fleet, on this connection."""
        return RedisStreams(self)

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _data_key(namespace: str, key: str) -> str:
        return f"{PREFIX}kv:{quote(namespace, safe='')}:{key}"

    @staticmethod
    def _index_key(namespace: str) -> str:
        return f"{PREFIX}kvidx:{quote(namespace, safe='')}"

    @staticmethod
    def _bucket_keys(bucket: str) -> list[str]:
        return [f"{PREFIX}rate:{bucket}", f"{PREFIX}pause:{bucket}"]

    def _clean(self, exc: BaseException) -> str:
        return str(exc) or type(exc).__name__

    @contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Redis errors after start, as plugin errors.

        A lost connection mid-run (failover, restart, network blip) is a network_error and
        retryable: the state is configured right and was reachable at start, so the same
        request may well succeed a moment later. Credentials refused or a Redis that refuses
        the command (read-only replica, out of memory, a foreign key of the wrong type) will
        not fix itself: config_error. Either way nothing falls back to an unshared budget.
        """
        exceptions = self._exceptions
        refused = (exceptions.AuthenticationError,
                   getattr(exceptions, "AuthorizationError", exceptions.AuthenticationError))
        try:
            yield
        except refused as exc:
            raise ConfigError(f"config key 'state': the Redis state at {self.url} refused "
                              f"us: {self._clean(exc)}") from None
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            raise NetworkError(f"lost the Redis state at {self.url} ({what}): "
                               f"{self._clean(exc)}") from None
        except exceptions.RedisError as exc:
            raise ConfigError(f"config key 'state': the Redis state at {self.url} failed a "
                              f"{what}: {self._clean(exc)}") from None



# KEYS: done key, attempts key, output stream ("" for none), alerts stream
# ARGV: group, message id, done ttl ms, digest, output ("" for none), source label
FINISH_LUA = """
local fresh = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3])
if fresh and KEYS[3] ~= '' and ARGV[5] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'digest', ARGV[4], 'source', ARGV[6], 'enriched', ARGV[5])
end
redis.call('DEL', KEYS[2])
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
if fresh then return 1 end
return 0
"""

Entry = tuple[str, dict[str, str]]  # a stream entry: its id and fields


class RedisStreams:
    """Redis Streams for a fleet of workers (integration/playbook/worker.py): consumer groups,
    claims and the finishing script. Errors are plugin errors, as for the rest of the state."""

    def __init__(self, store: RedisStore) -> None:
        self._store, self._redis = store, store._redis
        self._finish = self._redis.register_script(FINISH_LUA)

    def add(self, stream: str, entries: Iterator[dict[str, str]], every: int = 500) -> int:
        """XADD each entry, pipelined `every` at a time; how many were added."""
        added = 0
        with self._store._talking("stream write"):
            pipe = self._redis.pipeline(transaction=False)
            for fields in entries:
                values: dict[Any, Any] = dict(fields)  # redis-py's own key and value types
                pipe.xadd(stream, values)
                added += 1
                if added % every == 0:
                    pipe.execute()
            pipe.execute()
        return added

    def ensure_group(self, stream: str, group: str) -> None:
        """The consumer group, created with the stream if need be (reading from its start)."""
        with self._store._talking("stream group"):
            try:
                self._redis.xgroup_create(stream, group, id="0", mkstream=True)
            except self._store._exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_s: float,
              start: str, count: int) -> tuple[str, list[Entry]]:
        """XAUTOCLAIM: (the cursor to go on from, entries idle at least min_idle_s)."""
        with self._store._talking("stream claim"):
            reply = self._redis.xautoclaim(stream, group, consumer,
                                           min_idle_time=_ms(min_idle_s), start_id=start,
                                           count=count)
        return str(reply[0] or "0-0"), [(i, f) for i, f in reply[1] if f is not None]

    def read(self, stream: str, group: str, consumer: str, *, count: int,
             block_s: float) -> list[Entry]:
        """XREADGROUP of entries never delivered to anyone."""
        with self._store._talking("stream read"):
            reply: Any = self._redis.xreadgroup(group, consumer, {stream: ">"}, count=count,
                                                block=_ms(block_s))
        return [(i, f) for _, entries in reply or [] for i, f in entries]

    def pending(self, stream: str, group: str) -> int:
        with self._store._talking("stream read"):
            return int(self._redis.xpending(stream, group)["pending"])

    def ack(self, stream: str, group: str, entry_id: str) -> None:
        with self._store._talking("stream write"):
            self._redis.xack(stream, group, entry_id)

    def exists(self, key: str) -> bool:
        with self._store._talking("read"):
            return bool(self._redis.exists(key))

    def count(self, key: str, ttl_s: float) -> int:
        """Add one to a counter that expires after ttl_s; its new value."""
        with self._store._talking("write"), self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, _ms(ttl_s))
            return int(pipe.execute()[0])

    def finish(self, *, stream: str, group: str, entry_id: str, done_key: str,
               attempts_key: str, ttl_s: float, digest: str, output_stream: str,
               output: str, source: str) -> bool:
        """Mark `digest` done, add `output` to `output_stream` unless the digest was done
        already, forget the attempts and acknowledge the entry: atomically. True when the
        digest was new."""
        with self._store._talking("stream write"):
            return bool(self._finish(keys=[done_key, attempts_key, output_stream, stream],
                                     args=[group, entry_id, _ms(ttl_s), digest, output,
                                           source]))
