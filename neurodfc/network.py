"""The feedforward network ``v_i = W_i r_{i-1} + b_i``, ``r_i = phi(v_i)`` with feedback ``Q_i``."""

from __future__ import annotations

import torch
from torch import nn

from neurodfc.components.feedback import _xavier, init_feedback
from neurodfc.components.neurons import phi, phi_prime
from neurodfc.config import FeedbackConfig, NetworkConfig

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The torch dtype of each config ``dtype`` name."""


class DFCNetwork(nn.Module):
    """Weights ``W_i`` [n_i, n_{i-1}], biases ``b_i`` [n_i] and feedback ``Q_i`` [n_i, n_L].

    ``W``/``b`` are trainable parameters; ``Q`` are parameters with ``requires_grad=False``
    (their updates come from the feedback-learning rule, never from autograd). Layers are
    0-based in code (``W[i]`` is the paper's ``W_{i+1}``).

    Args:
        cfg: the ``[network]`` config: sizes ``[n_0, ..., n_L]``, activations ``phi``,
            biases and the initialisation of ``W`` (``b`` starts at zero).
        feedback: the ``[feedback]`` config: the initialisation of ``Q`` (default:
            ``FeedbackConfig()``).
        seed: seed of the initialisation (``W`` first, then ``Q``).
        dtype: floating-point type of every parameter.
        device: device of every parameter.

    Examples:
        >>> import torch
        >>> from neurodfc.config import NetworkConfig
        >>> net = DFCNetwork(NetworkConfig(sizes=[4, 3, 2]), seed=0)
        >>> net.depth, net.sizes, tuple(net.W[0].shape), tuple(net.full_Q().shape)
        (2, [4, 3, 2], (3, 4), (5, 2))
        >>> x = torch.zeros(8, 4, dtype=torch.float64)
        >>> v, r = net.feedforward(x)
        >>> [tuple(t.shape) for t in v], tuple(net(x).shape)
        ([(8, 3), (8, 2)], (8, 2))
        >>> net.W[0].requires_grad, net.Q[0].requires_grad
        (True, False)
    """

    def __init__(
        self,
        cfg: NetworkConfig,
        feedback: FeedbackConfig | None = None,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.act_names = cfg.activations()
        self._phi = [phi(a) for a in self.act_names]
        self._phi_prime = [phi_prime(a) for a in self.act_names]
        gen = torch.Generator().manual_seed(seed)
        ws, bs = [], []
        for n_prev, n in zip(cfg.sizes[:-1], cfg.sizes[1:], strict=True):
            w = torch.empty(n, n_prev, dtype=torch.float64)
            if cfg.init in ("xavier_normal", "xavier_uniform"):
                _xavier(w, cfg.init, gen, cfg.init_gain)
            elif cfg.init == "orthogonal":
                a = torch.randn(max(n, n_prev), min(n, n_prev), generator=gen, dtype=torch.float64)
                q, r = torch.linalg.qr(a)
                q = q * torch.sign(torch.diagonal(r))
                w = cfg.init_gain * (q if n >= n_prev else q.T)
            else:
                w.normal_(0.0, cfg.init_gain / n_prev**0.5, generator=gen)
            ws.append(nn.Parameter(w.to(device=device, dtype=dtype)))
            b = torch.zeros(n, dtype=dtype, device=device)
            bs.append(nn.Parameter(b, requires_grad=cfg.bias))
        self.W = nn.ParameterList(ws)
        self.b = nn.ParameterList(bs)
        fb = feedback or FeedbackConfig()
        weights = [w.detach() for w in self.W]
        blocks = None
        if fb.init == "jacobian_transpose":
            x0 = torch.zeros(1, cfg.sizes[0], dtype=dtype, device=device)
            v0, _ = self.feedforward(x0)
            blocks = self.split_units(jacobian(self, v0)[0], dim=1)
        qs = init_feedback(fb, weights, gen, blocks)
        self.Q = nn.ParameterList([nn.Parameter(q, requires_grad=False) for q in qs])

    # ----------------------------------------------------------------- structure
    @property
    def depth(self) -> int:
        """Number of layers L."""
        return len(self.W)

    @property
    def sizes(self) -> list[int]:
        """``[n_0, ..., n_L]``."""
        return list(self.cfg.sizes)

    @property
    def n_out(self) -> int:
        """Output size ``n_L``."""
        return self.cfg.sizes[-1]

    @property
    def has_bias(self) -> bool:
        """Whether biases are used (else they stay zero)."""
        return self.cfg.bias

    def act(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """``phi_i(v)`` of layer ``i`` (0-based) at voltages ``v`` [B, n_i]."""
        return self._phi[i](v)

    def act_prime(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """``phi_i'(v)`` of layer ``i`` (0-based) at voltages ``v`` [B, n_i]."""
        return self._phi_prime[i](v)

    def split_units(self, t: torch.Tensor, dim: int = -1) -> list[torch.Tensor]:
        """Split a tensor over the concatenated units into per-layer blocks.

        Args:
            t: a tensor whose dimension ``dim`` has size ``N = sum_i n_i`` (layers 1..L).
            dim: the dimension to split.

        Returns:
            L tensors, the i-th of size ``n_i`` along ``dim``.
        """
        return list(torch.split(t, self.cfg.sizes[1:], dim=dim))

    def full_Q(self) -> torch.Tensor:
        """``Q = [Q_1; ...; Q_L]`` [sum n_i, n_L]."""
        return torch.cat([q for q in self.Q], dim=0)

    # ----------------------------------------------------------------- forward
    def feedforward(
        self, x: torch.Tensor, dv: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Feedforward pass ``v_i = W_i r_{i-1} + b_i``, ``r_i = phi_i(v_i)``, ``r_0 = x``.

        Args:
            x: inputs [B, n_0].
            dv: optional per-layer voltage changes [B, n_i]; with them
                ``v_i = W_i r_{i-1} + b_i + dv_i`` layer by layer (the DFC-SSA state).

        Returns:
            ``(v, r)``: lists over layers 1..L of [B, n_i].
        """
        vs, rs = [], []
        r = x
        for i in range(self.depth):
            v = torch.nn.functional.linear(r, self.W[i], self.b[i] if self.cfg.bias else None)
            if dv is not None:
                v = v + dv[i]
            r = self.act(i, v)
            vs.append(v)
            rs.append(r)
        return vs, rs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network output ``r_L`` [B, n_L] of the inputs ``x`` [B, n_0]."""
        return self.feedforward(x)[1][-1]


def jacobian(network: DFCNetwork, v: list[torch.Tensor]) -> torch.Tensor:
    """``J = d r_L / d v`` [B, n_L, N] of ``network`` at voltages ``v`` (per layer [B, n_i]).

    Analytic layer recursion, batched: ``J_L = diag(phi_L'(v_L))``,
    ``J_i = J_{i+1} W_{i+1} diag(phi_i'(v_i))``.
    """
    L = network.depth
    d = [network.act_prime(i, v[i]) for i in range(L)]
    blocks: list[torch.Tensor] = [torch.diag_embed(d[-1])]
    for i in range(L - 2, -1, -1):
        blocks.insert(0, (blocks[0] @ network.W[i + 1]) * d[i].unsqueeze(1))
    return torch.cat(blocks, dim=2)
