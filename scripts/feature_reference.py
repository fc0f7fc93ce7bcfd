"""Eager-PyTorch and NumPy reference of the feature-based detectors, written
from the papers and their authors' released code, independent of gaia's Go
and C++ (docs/method.md states the same definitions):

  mahalanobis  Lee et al. 2018 (deep_Mahalanobis_detector): class means of the
               penultimate features, one tied covariance (sklearn's
               EmpiricalCovariance of the class-centred features), its
               pseudo-inverse; score = min_c (h - mu_c)^T S^+ (h - mu_c).
  react        Sun et al. 2021: clip at np.percentile(fit activations, p),
               then -logsumexp of the logits.
  knn          Sun et al. 2022: L2-normalized features, the distance to the
               k-th nearest normalized fit feature (exact search).
  vim          Wang et al. 2022: u = -pinv(W) b; eigenvectors of the
               covariance of (h - u) about zero (EmpiricalCovariance with
               assume_centered=True); NS = those past the top d; alpha =
               mean max logit / mean ||(h - u) NS|| on the fit set;
               score = alpha ||(h - u) NS|| - logsumexp(z).
  ash          Djurisic et al. 2023 (ash_s, ash_p, ash_b on the final map),
               then the model's own pooling and classifier; -logsumexp.
  dice         Sun & Li 2022: contrib = mean fit feature * W; keep W where
               contrib > np.percentile(contrib, p); -logsumexp.
  klm          Hendrycks et al. 2019: d_c = mean softmax of the fit samples
               predicted c; score = min_c KL(softmax(z) || d_c).

Fit statistics in float64 (numpy), as gaia computes them; every score is an
OOD score (higher = more out-of-distribution).
"""

import numpy as np
import torch

import models


def features(model, arch, x, batch=64):
    """h (classifier input), z (logits) and F (final feature map) of x, float32."""
    model.eval()
    feats, head = models.features_and_head(model, arch)
    hs, zs, fs = [], [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            f = feats(x[i:i + batch])
            h, z = head(f)
            hs.append(h.float())
            zs.append(z.float())
            fs.append(f.float())
    return torch.cat(hs), torch.cat(zs), torch.cat(fs)


def classifier(model, arch):
    """The classifier's weight (K x D) and bias (K), float32 tensors."""
    from reference import classifier_of
    fc = classifier_of(model, arch)
    w = fc.weight.detach().reshape(fc.weight.shape[0], -1).float()
    b = fc.bias.detach().float() if fc.bias is not None else torch.zeros(w.shape[0])
    return w, b


def neg_energy(logits):
    return -torch.logsumexp(logits.double(), 1).numpy()


def ash_map(x, variant, percentile):
    """The official ASH functions, on a copy of x (N x C x H x W)."""
    x = x.clone()
    b, c, h, w = x.shape
    s1 = x.sum(dim=[1, 2, 3])
    n = x.shape[1:].numel()
    k = n - int(np.round(n * percentile / 100.0))
    t = x.view((b, c * h * w))
    v, i = torch.topk(t, k, dim=1)
    if variant == "b":
        fill = (s1 / k).unsqueeze(dim=1).expand(v.shape)
        t.zero_().scatter_(dim=1, index=i, src=fill)
    else:
        t.zero_().scatter_(dim=1, index=i, src=v)
        if variant == "s":
            s2 = x.sum(dim=[1, 2, 3])
            x = x * torch.exp(s1 / s2)[:, None, None, None]
    return x


def feature_scores(model, arch, x_fit, y_fit, x, react_p=90.0, knn_k=50, vim_dim=0,
                   ash_variant="s", ash_p=90.0, dice_p=90.0):
    hf, zf, _ = features(model, arch, x_fit)
    h, z, fmap = features(model, arch, x)
    w, b = classifier(model, arch)
    hf64, h64 = hf.double().numpy(), h.double().numpy()
    out = {}

    # Mahalanobis: tied covariance of the class-centred fit features.
    classes = sorted(set(int(c) for c in y_fit))
    means = np.stack([hf64[y_fit == c].mean(0) for c in classes])
    centred = hf64 - means[np.searchsorted(classes, y_fit)]
    cov = centred.T @ centred / hf64.shape[0]
    prec = torch.linalg.pinv(torch.from_numpy(cov), hermitian=True).numpy()
    d = h64[:, None, :] - means[None, :, :]
    out["mahalanobis"] = np.einsum("nci,ij,ncj->nc", d, prec, d).min(1)

    # ReAct.
    t = np.percentile(hf.numpy().astype(np.float64).flatten(), react_p)
    out["react"] = neg_energy(h.clip(max=t) @ w.T + b)

    # KNN: exact distance to the k-th nearest normalized fit feature.
    def normalize(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)
    dist = np.linalg.norm(normalize(h64)[:, None, :] - normalize(hf64)[None, :, :], axis=-1)
    out["knn"] = np.sort(dist, axis=1)[:, knn_k - 1]

    # ViM.
    wd, bd = w.double().numpy(), b.double().numpy()
    dim_n = hf64.shape[1]
    if vim_dim == 0:
        vim_dim = 1000 if dim_n >= 2048 else 512 if dim_n >= 768 else dim_n // 2
    u = -np.linalg.pinv(wd) @ bd
    xc = hf64 - u
    ec = xc.T @ xc / xc.shape[0]
    eig_vals, eig_vecs = np.linalg.eigh(ec)
    ns = np.ascontiguousarray(eig_vecs.T[np.argsort(eig_vals * -1)[vim_dim:]].T)
    vlogit_fit = np.linalg.norm((hf64 - u) @ ns, axis=-1)
    alpha = zf.double().numpy().max(axis=-1).mean() / vlogit_fit.mean()
    out["vim"] = alpha * np.linalg.norm((h64 - u) @ ns, axis=-1) + neg_energy(z)

    # ASH on the final feature map, then the model's pooling and classifier.
    pooled = ash_map(fmap, ash_variant, ash_p).mean(dim=(2, 3))
    out["ash"] = neg_energy(pooled @ w.T + b)

    # DICE.
    contrib = hf64.mean(0)[None, :] * wd
    thresh = np.percentile(contrib, dice_p)
    masked = torch.from_numpy(wd * (contrib > thresh)).float()
    out["dice"] = neg_energy(h @ masked.T + b)

    # KL matching.
    pf = torch.softmax(zf.double(), 1).numpy()
    pred = pf.argmax(1)
    dmeans = np.stack([pf[pred == c].mean(0) for c in sorted(set(pred.tolist()))])
    p = torch.softmax(z.double(), 1).numpy()
    kl = (p[:, None, :] * (np.log(p)[:, None, :] - np.log(dmeans)[None, :, :])).sum(-1)
    out["klm"] = kl.min(1)
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in out.items()}
