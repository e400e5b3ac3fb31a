"""What the capacity a backtest's actions bought would cost: a price table and its units.

The defaults are Azure's public pay-as-you-go **list prices** in USD (rounded, one region,
no reservations, savings plans, free grants or negotiated discounts). They are there so
a report says *something* about money out of the box; override them with
:func:`load_prices` for your region, currency and agreement.

Units :func:`cost_of` knows (every quantity is *extra* capacity × time):

=================================  ====================================================
``replica-hours``                  Container Apps replicas × hours, at
                                   :attr:`Prices.replica_hour` (a replica of
                                   ``replica_vcpu`` vCPU and ``replica_gib`` GiB)
``vcpu-hours``                     Container Apps vCPU × hours (consumption plan)
``gib-hours``                      Container Apps memory GiB × hours (consumption plan)
``ru-hours``                       Cosmos DB provisioned (manual) RU/s × hours
``ru-hours-autoscale``             Cosmos DB autoscale max RU/s × hours
``redis:<Tier>:<size>-hours``      Azure Cache for Redis caches of that SKU × hours, e.g.
                                   ``redis:Standard:C2-hours``, ``redis:Premium:P1-hours``
=================================  ====================================================

Any other unit is priced 0 and reported by :func:`unpriced`, never guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from controller.backtest.model import Cost

SECONDS_PER_HOUR = 3600.0

# Azure Cache for Redis, USD per cache per hour: rough pay-as-you-go list prices (East US),
# Standard (replicated, C family) and Premium (P family). Override per region.
REDIS_HOURLY: Mapping[str, float] = {
    "Standard:C0": 0.055,
    "Standard:C1": 0.139,
    "Standard:C2": 0.226,
    "Standard:C3": 0.450,
    "Standard:C4": 0.525,
    "Standard:C5": 1.050,
    "Standard:C6": 2.100,
    "Premium:P1": 0.554,
    "Premium:P2": 1.108,
    "Premium:P3": 2.216,
    "Premium:P4": 4.432,
    "Premium:P5": 10.250,
}

_REDIS_UNIT = re.compile(r"^redis:(?P<tier>[A-Za-z]+):(?P<size>[A-Za-z]\d+)-hours$")
_REDIS_SKU = re.compile(r"^(?P<tier>[A-Za-z]+):(?P<size>[A-Za-z]\d+)$")


class PricesError(ValueError):
    """A price file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Prices:
    """A price table. Every default is an Azure list price in USD, to override.

    In a price file (:func:`load_prices`) each field is spelt in camelCase, like the
    settings file: ``vcpuSecond``, ``ru100HourAutoscale``, ``redisHour`` …
    """

    currency: str = "USD"
    #: Container Apps consumption plan, per vCPU-second of active use (list: $0.000024).
    vcpu_second: float = 0.000024
    #: Container Apps consumption plan, per GiB-second of active use (list: $0.000003).
    gib_second: float = 0.000003
    #: The replica a ``replica-hours`` figure stands for (Container Apps' smallest
    #: common pairing is 0.5 vCPU with 1 GiB).
    replica_vcpu: float = 0.5
    replica_gib: float = 1.0
    #: Per replica-hour; ``None`` derives it from the three figures above
    #: (0.5 × 0.0864 + 1 × 0.0108 = $0.054 per hour by default).
    replica_hour_override: float | None = None
    #: Cosmos DB per 100 RU/s provisioned for one hour: manual (list ~$0.008) and
    #: autoscale, billed on the highest RU/s reached in the hour (list ~$0.012).
    ru100_hour: float = 0.008
    ru100_hour_autoscale: float = 0.012
    #: Azure Cache for Redis per cache-hour by ``"<Tier>:<family><capacity>"``.
    redis_hour: Mapping[str, float] = field(default_factory=lambda: dict(REDIS_HOURLY))

    @property
    def replica_hour(self) -> float:
        if self.replica_hour_override is not None:
            return self.replica_hour_override
        per_hour = self.replica_vcpu * self.vcpu_second + self.replica_gib * self.gib_second
        return per_hour * SECONDS_PER_HOUR


def unit_price(unit: str, prices: Prices) -> float | None:
    """The price of one ``unit`` (see the module's table), or ``None`` when unknown."""
    fixed = {
        "replica-hours": prices.replica_hour,
        "vcpu-hours": prices.vcpu_second * SECONDS_PER_HOUR,
        "gib-hours": prices.gib_second * SECONDS_PER_HOUR,
        "ru-hours": prices.ru100_hour / 100,
        "ru-hours-autoscale": prices.ru100_hour_autoscale / 100,
    }
    if unit in fixed:
        return fixed[unit]
    match = _REDIS_UNIT.match(unit)
    if match:
        return prices.redis_hour.get(_sku(match["tier"], match["size"]))
    return None


def unpriced(units: Mapping[str, float], prices: Prices) -> tuple[str, ...]:
    """The units in ``units`` the table has no price for (they count as 0), sorted."""
    return tuple(sorted(unit for unit in units if unit_price(unit, prices) is None))


def cost_of(units: Mapping[str, float], prices: Prices) -> Cost:
    """The money for ``units`` (unit → quantity); an unknown unit is priced 0.

    The returned :class:`Cost` keeps every unit given, priced or not: :func:`unpriced`
    (or the report, given the same ``prices``) tells which ones counted as 0.
    """
    total = 0.0
    for unit, quantity in sorted(units.items()):
        total += quantity * (unit_price(unit, prices) or 0.0)
    return Cost(units=dict(sorted(units.items())), total=total, currency=prices.currency)


def _sku(tier: str, size: str) -> str:
    """``"standard", "c2"`` → ``"Standard:C2"``: Azure spells SKUs in any case."""
    return f"{tier.capitalize()}:{size.upper()}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# The file's keys: camelCase field names; ``replicaHour`` sets the derived figure outright.
_KEYS: dict[str, str] = {
    ("replicaHour" if f.name == "replica_hour_override" else _camel(f.name)): f.name
    for f in fields(Prices)
}


def load_prices(path: str | Path, base: Prices | None = None) -> Prices:
    """``base`` (the defaults) with the keys a YAML or JSON file sets, any subset of them.

    ``redisHour`` entries are merged into the table, adding or replacing sizes. An
    unknown key, or a value that is not a non-negative number, is a :class:`PricesError`
    naming the file and the key.
    """
    path = Path(path)
    base = base or Prices()
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise PricesError(f"{path}: cannot read prices: {exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise PricesError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if data is None:
        return base
    if not isinstance(data, dict):
        raise PricesError(f"{path}: prices must be a mapping of keys to values")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = _KEYS.get(str(key))
        if name is None:
            known = ", ".join(sorted(_KEYS))
            raise PricesError(f"{path}: {key}: unknown key (known keys: {known})")
        if name == "currency":
            if not isinstance(value, str) or not value.strip():
                raise PricesError(f"{path}: {key}: must be a currency code such as USD")
            changes[name] = value.strip()
        elif name == "redis_hour":
            changes[name] = {**base.redis_hour, **_redis_table(path, str(key), value)}
        else:
            changes[name] = _amount(path, str(key), value)
    return replace(base, **changes)


def _amount(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PricesError(f"{path}: {key}: must be a number, not {value!r}")
    if value < 0:
        raise PricesError(f"{path}: {key}: must not be negative, not {value!r}")
    return float(value)


def _redis_table(path: Path, key: str, value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise PricesError(f'{path}: {key}: must map "<Tier>:<size>" (e.g. Standard:C2) to prices')
    table: dict[str, float] = {}
    for sku, price in value.items():
        match = _REDIS_SKU.match(str(sku))
        if match is None:
            raise PricesError(f'{path}: {key}.{sku}: not a "<Tier>:<size>" such as Standard:C2')
        table[_sku(match["tier"], match["size"])] = _amount(path, f"{key}.{sku}", price)
    return table
