"""What the teacher may spend: a request count and a dollar amount, checked before each request.

Dollars come from the token usage each reply reports, at the configured per-model prices (USD
per million input and output tokens). To never go over a dollar budget, a request is only sent
when what is spent, plus an upper bound on every request in flight (its estimated input and its
full `max_tokens` of output), plus its own upper bound, fits. Once the budget refuses a request
it stays exhausted: the teacher stops for the rest of the run, and says so once.

Requests that fail (429, 5xx, timeouts) are counted against `max_requests`, since providers
count them against quotas too, but cost no dollars: providers do not bill failed requests.
"""

from __future__ import annotations

from dataclasses import dataclass

# USD per million (input, output) tokens, list prices when this was written. teacher.input_price_
# per_mtok / output_price_per_mtok override them, and a model not listed needs them for a dollar
# budget (spend is then reported as NaN without them).
PRICES: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.0),
    "gpt-4.1-mini": (0.40, 1.60),
}


def price_of(model: str, input_override: float | None, output_override: float | None):
    """(input, output) USD per million tokens, or None when neither config nor table knows."""
    table = PRICES.get(model)
    price_in = input_override if input_override is not None else (table[0] if table else None)
    price_out = output_override if output_override is not None else (table[1] if table else None)
    if price_in is None or price_out is None:
        return None
    return price_in, price_out


@dataclass
class Budget:
    """Request and dollar accounting; 0 means no limit. Not thread-safe: one event loop uses it."""

    max_requests: int = 0
    max_dollars: float = 0.0
    prices: tuple[float, float] | None = None  # USD per million (input, output) tokens
    requests: int = 0  # requests sent, failed ones included
    dollars: float = 0.0  # spent, from reported usage
    pending: float = 0.0  # upper bound of the cost of requests in flight
    exhausted: str | None = None  # why the budget stopped the teacher, once it has

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        if self.prices is None:
            return float("nan")
        return (input_tokens * self.prices[0] + output_tokens * self.prices[1]) / 1e6

    def start(self, input_estimate: float, max_output: float) -> float | None:
        """Admit one request: its reserved cost bound, or None when the budget is exhausted."""
        if self.exhausted is None and self.max_requests and self.requests >= self.max_requests:
            self.exhausted = f"the request budget is spent ({self.requests} requests)"
        bound = self.cost(input_estimate, max_output) if self.prices else 0.0
        if self.exhausted is None and self.max_dollars:
            committed = self.dollars + self.pending
            if committed + bound > self.max_dollars:
                self.exhausted = (
                    f"the dollar budget is spent (${self.dollars:.4f} spent, ${self.pending:.4f}"
                    f" in flight, next request up to ${bound:.4f}, limit ${self.max_dollars:g})"
                )
        if self.exhausted is not None:
            return None
        self.requests += 1
        self.pending += bound
        return bound

    def cancel(self, reserved: float) -> None:
        """A request `start` admitted was never sent: its count and reserved cost are given
        back (it stays exhausted if it was)."""
        self.requests = max(0, self.requests - 1)
        self.pending = max(0.0, self.pending - reserved)

    def finish(self, reserved: float, input_tokens: float, output_tokens: float) -> None:
        """A request came back with this usage (0, 0 when it failed)."""
        self.pending = max(0.0, self.pending - reserved)
        if input_tokens or output_tokens:
            self.dollars += self.cost(input_tokens, output_tokens)
