"""The simulated SES account: identities, quotas, the send-rate window, faults and counters.

:class:`Account` decides the fate of each send request (accept, refuse, fail, hang up) the
way SES would, and keeps the state that decision needs. It knows nothing of HTTP or of the
v1/v2 wire formats: ``_v1.py`` and ``_v2.py`` parse requests into :class:`SendRequest`
and render what the account decided.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Callable
from email.utils import parseaddr
from typing import Any, Literal

from asyncmailer.testing._config import EndpointConfig
from asyncmailer.testing._ses_api import EncodedMessage, SESError, new_message_id, new_request_id
from asyncmailer.testing._stats import Counters
from asyncmailer.testing._store import MessageStore, StoredMessage

__all__ = ["Account", "Region", "SendRequest"]

_DAY = 86400.0

#: Names the region for error messages; called only when a message needs it.
Region = Callable[[], str]


class SendRequest:
    """A parsed send request, before the account decides its fate."""

    __slots__ = ("compose", "destinations", "params", "raw", "source")

    def __init__(
        self,
        source: str,
        destinations: list[str],
        raw: EncodedMessage | None,
        params: dict[str, Any],
        compose: Callable[[str], bytes] | None = None,
    ) -> None:
        #: The envelope sender.
        self.source = source
        #: The envelope recipients.
        self.destinations = destinations
        #: The raw message, for raw sends.
        self.raw = raw
        #: The request parameters kept with the stored message.
        self.params = params
        #: Builds the message of a simple (formatted) send from its message id.
        self.compose = compose


def token(seed: str, size: int = 32) -> str:
    """A stable pseudo-random token (verification and DKIM tokens)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:size]


class Account:
    """State and decisions of the simulated account (thread-safe through one lock)."""

    def __init__(
        self, *, store: MessageStore, clock: Callable[[], float], seed: int | None
    ) -> None:
        #: Where accepted messages go.
        self.store = store
        #: The clock of arrivals and windows.
        self.clock = clock
        #: The counters behind EndpointStats.
        self.counters = Counters(clock(), time.time())
        #: Guards every mutable field, here and in the counters.
        self.lock = self.counters.lock
        self._seed = seed
        self._registered: dict[str, str] = {}
        self._rate_window: deque[tuple[float, int]] = deque()
        self._rate_sum = 0
        self._day_window: deque[tuple[float, int]] = deque()
        self._day_sum = 0
        #: Stored SESv2 templates by name (``_templates.py``).
        self.templates: dict[str, Any] = {}
        #: Rendering failures of templated sends (``_templates.py``), oldest first.
        self.rendering_failures: list[dict[str, str]] = []
        self._seed_rngs()

    def _seed_rngs(self) -> None:
        seed = self._seed
        # Separate streams, so changing one fault setting leaves the other sequences alone.
        if seed is None:
            self._fault_rng = random.Random()
            self._spike_rng = random.Random()
            self._id_rng = random.Random()
        else:
            self._fault_rng = random.Random(f"{seed}:faults")
            self._spike_rng = random.Random(f"{seed}:latency")
            self._id_rng = random.Random(f"{seed}:ids")

    def restart_clock(self) -> None:
        """Mark the start of serving in the counters."""
        with self.lock:
            self.counters.started_clock = self.clock()
            self.counters.started_time = time.time()

    def reset(self) -> None:
        """Forget messages, counters, windows and registered identities; reseed."""
        with self.lock:
            self.store.clear()
            self.counters.clear(self.clock(), time.time())
            self._registered.clear()
            self._rate_window.clear()
            self._rate_sum = 0
            self._day_window.clear()
            self._day_sum = 0
            self.templates.clear()
            self.rendering_failures.clear()
            self._seed_rngs()

    # --------------------------------------------------------------------------- requests

    def request_started(self, config: EndpointConfig) -> tuple[str, float]:
        """Count one SES API request in flight: (its request id, the latency to inject)."""
        counters = self.counters
        with self.lock:
            counters.in_flight += 1
            if counters.in_flight > counters.max_in_flight:
                counters.max_in_flight = counters.in_flight
        delay = config.latency
        if config.latency_spike_probability and (
            self._spike_rng.random() < config.latency_spike_probability
        ):
            delay += config.latency_spike
        return new_request_id(self._id_rng), delay

    def request_done(self) -> None:
        """One request was answered, dropped, or abandoned by its client."""
        with self.lock:
            self.counters.in_flight -= 1

    def count(self, key: str) -> None:
        """Count one request for ``key`` (``"ses:SendRawEmail"``...)."""
        requests = self.counters.requests
        with self.lock:
            requests[key] = requests.get(key, 0) + 1

    def count_error(self, code: str) -> None:
        """Count one error answer."""
        errors = self.counters.errors
        with self.lock:
            errors[code] = errors.get(code, 0) + 1

    # ------------------------------------------------------------------------------ sends

    def send(
        self,
        config: EndpointConfig,
        *,
        api: Literal["v1", "v2"],
        action: str,
        parse: Callable[[], SendRequest],
        region: Region,
    ) -> tuple[str | None, StoredMessage | None]:
        """Decide one send: (message id, or None to hang up; the record to store, if any).

        Refusals raise :class:`SESError`. ``region`` names the region in error messages.
        """
        now = self.clock()
        recipients = 0
        accepted = False
        try:
            send = parse()
            recipients = len(send.destinations)
            message_id, record = self._decide(config, send, api, action, now, region)
            accepted = record is not None
            return message_id, record
        finally:
            # The fate is known here, whatever it was: record the arrival.
            counters = self.counters
            with self.lock:
                counters.send_arrivals.append(now)
                counters.send_recipients.append(recipients)
                counters.send_accepted.append(accepted)

    def _decide(
        self,
        config: EndpointConfig,
        send: SendRequest,
        api: Literal["v1", "v2"],
        action: str,
        now: float,
        region: Region,
    ) -> tuple[str | None, StoredMessage | None]:
        counters = self.counters
        n = len(send.destinations)
        # One draw decides the random faults: [drop before | 5xx | throttle | drop after | ok].
        draw = self._fault_rng.random()
        band = config.drop_before_accept_ratio
        if draw < band:
            with self.lock:
                counters.dropped_before_accept += 1
            return None, None
        errors = config.server_error_ratio
        if draw < band + errors:
            if draw < band + errors / 2:
                raise SESError.internal_failure()
            raise SESError.service_unavailable()
        band += errors
        if not config.sending_enabled:
            raise SESError.sending_paused()
        if n == 0:
            raise SESError.invalid("The message has no recipients.")
        if n > config.max_recipients:
            raise SESError.invalid(f"Recipient count exceeds {config.max_recipients}.")
        if send.raw is not None:
            limit = config.max_message_size_v1 if api == "v1" else config.max_message_size_v2
            if not send.raw.size_at_most(limit):
                raise SESError.invalid(
                    f"Message length is more than {limit} bytes long: '{send.raw.size()}'."
                )
        self._check_identities(config, send, region)
        config_set = send.params.get("ConfigurationSetName")
        if (
            config_set is not None
            and config.configuration_sets is not None
            and config_set not in config.configuration_sets
        ):
            raise SESError.configuration_set_missing(str(config_set))
        received_at = time.time()
        message_id = new_message_id(self._id_rng, int(received_at * 1000))
        if send.raw is not None:
            raw = send.raw
        else:
            assert send.compose is not None
            raw = EncodedMessage.from_bytes(send.compose(message_id))
        with self.lock:
            if config.enforce_daily_quota and config.max_24_hour_send >= 0:
                self._prune_day(now)
                if self._day_sum + n > config.max_24_hour_send:
                    raise SESError.daily_quota_exceeded()
            # Like SES, the rate counts recipients over the last second, (now - 1, now].
            window = self._rate_window
            while window and window[0][0] + 1.0 <= now:
                self._rate_sum -= window.popleft()[1]
            if config.throttle_rate is not None and self._rate_sum + n > config.throttle_rate:
                raise SESError.rate_exceeded()
            if draw < band + config.throttle_ratio:
                raise SESError.rate_exceeded()
            band += config.throttle_ratio
            window.append((now, n))
            self._rate_sum += n
            self._prune_day(now)
            self._day_window.append((now, n))
            self._day_sum += n
            counters.messages_accepted += 1
            counters.recipients_accepted += n
            drop = draw < band + config.drop_after_accept_ratio
            if drop:
                counters.dropped_after_accept += 1
        record = StoredMessage(
            message_id=message_id,
            api=api,
            action=action,
            source=send.source,
            destinations=tuple(send.destinations),
            raw=raw,
            params=send.params,
            received_at=received_at,
            arrival=now,
        )
        return (None if drop else message_id), record

    # ------------------------------------------------------- per-entry sends (_templates.py)

    def fault_draw(self) -> float:
        """One draw of the fault random stream (bulk requests and their entries)."""
        return self._fault_rng.random()

    def admit(self, config: EndpointConfig, now: float, n: int) -> str | None:
        """Count ``n`` recipients arriving at ``now``, or say why not (a bulk entry status).

        The same daily quota and one-second rate window as every other send.
        """
        counters = self.counters
        with self.lock:
            if config.enforce_daily_quota and config.max_24_hour_send >= 0:
                self._prune_day(now)
                if self._day_sum + n > config.max_24_hour_send:
                    return "ACCOUNT_DAILY_QUOTA_EXCEEDED"
            window = self._rate_window
            while window and window[0][0] + 1.0 <= now:
                self._rate_sum -= window.popleft()[1]
            if config.throttle_rate is not None and self._rate_sum + n > config.throttle_rate:
                return "ACCOUNT_THROTTLED"
            window.append((now, n))
            self._rate_sum += n
            self._prune_day(now)
            self._day_window.append((now, n))
            self._day_sum += n
            counters.messages_accepted += 1
            counters.recipients_accepted += n
        return None

    def next_message_id(self, received_at: float) -> str:
        """A new SES message id."""
        with self.lock:
            return new_message_id(self._id_rng, int(received_at * 1000))

    def _prune_day(self, now: float) -> None:
        window = self._day_window
        while window and window[0][0] + _DAY <= now:
            self._day_sum -= window.popleft()[1]

    def quota(self, config: EndpointConfig) -> tuple[float, float, float]:
        """(Max24HourSend, MaxSendRate, SentLast24Hours)."""
        with self.lock:
            self._prune_day(self.clock())
            sent = float(self._day_sum)
        return float(config.max_24_hour_send), float(config.max_send_rate), sent

    # ------------------------------------------------------------------------- identities

    def is_verified(self, config: EndpointConfig, identity: str) -> bool:
        """Whether an address may send: it, or its domain or a parent domain, is verified."""
        verified = config.verified_identities
        if verified is None:
            return True
        registered = self._registered
        identity = identity.lower()
        if identity in verified or identity in registered:
            return True
        labels = identity.rpartition("@")[2].split(".")
        for i in range(len(labels) - 1):
            parent = ".".join(labels[i:])
            if parent in verified or parent in registered:
                return True
        return False

    def _check_identities(self, config: EndpointConfig, send: SendRequest, region: Region) -> None:
        if config.verified_identities is None:
            return
        sender = parseaddr(send.source)[1] or send.source
        failed = [] if self.is_verified(config, sender) else [sender]
        if config.sandbox:
            failed.extend(addr for addr in send.destinations if not self.is_verified(config, addr))
        if failed:
            raise SESError.not_verified(region(), failed)

    def identities(self, config: EndpointConfig) -> list[str]:
        """The identities the account knows: configured and registered, sorted."""
        names = set(self._registered)
        if config.verified_identities is not None:
            names |= config.verified_identities
        return sorted(names)

    def known(self, config: EndpointConfig, identity: str) -> bool:
        """Whether ``identity`` exists (every identity does when nothing is enforced)."""
        if config.verified_identities is None:
            return True
        lowered = identity.lower()
        return lowered in config.verified_identities or lowered in self._registered

    def is_registered(self, identity: str) -> bool:
        """Whether ``identity`` was created through the API."""
        return identity.lower() in self._registered

    def register(self, identity: str) -> None:
        """Create (and at once verify) an identity, as VerifyEmailIdentity & co. do."""
        with self.lock:
            self._registered[identity.lower()] = "EmailAddress" if "@" in identity else "Domain"

    def unregister(self, identity: str) -> bool:
        """Delete an identity created through the API; False if there was none."""
        with self.lock:
            return self._registered.pop(identity.lower(), None) is not None

    @staticmethod
    def dkim_tokens(domain: str) -> list[str]:
        """The three Easy DKIM tokens of a domain."""
        return [token(f"dkim:{domain.lower()}:{i}") for i in range(3)]

    @staticmethod
    def verification_token(domain: str) -> str:
        """The TXT verification token of a domain."""
        return token("verify:" + domain.lower())
