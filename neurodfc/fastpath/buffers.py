"""The preallocated state of one fused run, and its recording at requested time points.

Everything the hot loop writes is allocated here once: the voltages, the basal and apical
voltages (all layers' apical voltages are column blocks of one ``[B, N]`` tensor, so the
feedback of every layer is one matmul ``u @ Q^T`` with ``Q = [Q_1; ...; Q_L]``), the controller's
state, the scratch buffers and the rate slots of the trajectory accumulator
(:class:`neurodfc.core.sums.ChunkedSums`).
"""

from __future__ import annotations

import torch

from neurodfc.core.noise import ApicalNoise
from neurodfc.core.sums import ChunkedSums
from neurodfc.fastpath.settings import FusedSettings
from neurodfc.fastpath.stack import StackedNetwork
from neurodfc.network import DFCNetwork


class FusedBuffers:
    """The network's tensors (detached) and every buffer of one run; the initial state is the
    feedforward pass with zero control.

    Args:
        net: the network (weights ``W``, ``b``, feedback ``Q``).
        x: inputs ``r_0`` [B, n_0] (an ensemble: [M, B, n_0]).
        r_target: output targets ``r_L*`` [B, n_L] (an ensemble: [M, B, n_L]).
        cfg: the run's settings.

    An ensemble (``net`` a :class:`~neurodfc.fastpath.stack.StackedNetwork` of M members)
    puts a leading member dimension on every buffer.
    """

    def __init__(
        self,
        net: DFCNetwork | StackedNetwork,
        x: torch.Tensor,
        r_target: torch.Tensor,
        cfg: FusedSettings,
    ) -> None:
        self.net, self.x, self.r_target = net, x, r_target
        self.L = L = net.depth
        self.lead = lead = tuple(x.shape[:-2])
        B = x.shape[-2]
        dtype, device = x.dtype, x.device
        self.sizes = sizes = net.sizes[1:]
        self.N = N = sum(sizes)
        offs = [0]
        for n in sizes:
            offs.append(offs[-1] + n)
        self.offs = offs
        self.acts = list(net.act_names)
        self.Wt = [w.detach().transpose(-1, -2) for w in net.W]
        bias = [b.detach().unsqueeze(-2) if lead else b.detach() for b in net.b]
        self.bias = bias if net.has_bias else [None] * L
        QT = torch.cat([q.detach() for q in net.Q], dim=-2).transpose(-1, -2)
        self.QT = QT.contiguous()  # [n_L, N]
        self.v_ff, r_ff = net.feedforward(x)
        self.drive0 = self.v_ff[0]  # layer 1's basal input W_1 r_0 + b_1: constant
        # rates (and rule signals) of one chunk of time slots: the shared trajectory accumulator
        self.sums = ChunkedSums(sizes, B, cfg.slots, cfg.accumulate is not None, x, lead)
        self.slot_r = self.sums.rates
        self.slot_d = self.sums.signals
        for i in range(L):
            self.slot_r[i][0].copy_(r_ff[i])
        self.v = [t.clone() for t in self.v_ff]
        self.vb = [self.drive0, *[t.clone() for t in self.v_ff[1:]]]
        self.FB = torch.zeros((*lead, B, N), dtype=dtype, device=device)
        shared = cfg.instantaneous and not cfg.noisy
        self.VA = self.FB if shared else torch.zeros_like(self.FB)
        self.va = [self.VA[..., offs[i] : offs[i + 1]] for i in range(L)]
        self.tmp = [torch.empty((*lead, B, n), dtype=dtype, device=device) for n in sizes]
        self.half = [torch.empty((*lead, B, n), dtype=dtype, device=device) for n in sizes]
        self.u = torch.zeros_like(r_target)
        self.u_int = torch.zeros_like(r_target)
        self.e = torch.empty_like(r_target)
        self.rate = torch.empty_like(r_target)
        self.acc_Q = torch.zeros((*lead, N, r_target.shape[-1]), dtype=dtype, device=device)
        ou = cfg.tau_noise is not None
        if ou and lead:
            raise ValueError("Ornstein-Uhlenbeck noise is not batched over ensemble members")
        self.ou = torch.zeros((B, N), dtype=dtype, device=device) if ou else None
        sig = ApicalNoise(float(cfg.noise[0]), float(cfg.noise[1])) if ou else None
        self.sig_units = sig.sigmas(sizes, x) if sig is not None else None
        self.layer_order = list(range(L)) if cfg.inst_tx else list(range(L - 1, -1, -1))
        self.softmax = cfg.error == "softmax"

    def error_into(self, r_out: torch.Tensor, out: torch.Tensor) -> None:
        """The output error ``r* - r_L`` (or ``r* - softmax(r_L)``) into ``out``.

        Args:
            r_out: output rates ``r_L`` [B, n_L].
            out: buffer [B, n_L].
        """
        torch.sub(self.r_target, torch.softmax(r_out, dim=-1) if self.softmax else r_out, out=out)

    def roll_chunk(self) -> None:
        """At a chunk's end: add its slots to the sums and carry the last rates to slot 0."""
        K = len(self.slot_r[0])
        self.sums.flush(1, K)
        for i in range(self.L):
            self.slot_r[i][0].copy_(self.slot_r[i][K - 1])


class Records:
    """``r_L``, ``u``, ``e`` (and optionally ``v``, ``a``) at the requested time points.

    Args:
        buf: the run's buffers (shapes, dtype, device).
        cfg: the run's settings (``record_steps``, ``record_v``, ``record_apical``).
    """

    def __init__(self, buf: FusedBuffers, cfg: FusedSettings) -> None:
        n_rec = len(cfg.record_steps)
        B = buf.x.shape[-2]
        dtype, device = buf.x.dtype, buf.x.device
        self.index = {s: k for k, s in enumerate(cfg.record_steps)}
        self.r = torch.empty((n_rec, *buf.r_target.shape), dtype=dtype, device=device)
        self.u = torch.empty_like(self.r)
        self.e = torch.empty_like(self.r)

        def per_layer(on: bool) -> list[torch.Tensor]:
            shape = [(n_rec, *buf.lead, B, n) for n in buf.sizes] if on else []
            return [torch.empty(s, dtype=dtype, device=device) for s in shape]

        self.v = per_layer(cfg.record_v)
        self.a = per_layer(cfg.record_apical)

    def store(self, k: int, slot: int, buf: FusedBuffers) -> None:
        """Record the current state (its rates in ``slot``) as record ``k``.

        Args:
            k: index of the record.
            slot: rate slot of the current state.
            buf: the run's buffers.
        """
        r_out = buf.slot_r[buf.L - 1][slot]
        self.r[k] = r_out
        self.u[k] = buf.u
        buf.error_into(r_out, self.e[k])
        for i in range(len(self.v)):
            self.v[i][k] = buf.v[i]
        for i in range(len(self.a)):
            self.a[i][k] = buf.va[i]
