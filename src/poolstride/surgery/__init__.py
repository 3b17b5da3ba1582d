"""Model surgery: find the downsampling sites of any PyTorch model and swap them by policy.

>>> from poolstride import models, surgery
>>> net = models.build("tiny")
>>> [s.kind for s in surgery.sites(net, (3, 32, 32))]
['pool', 'pool', 'pool']
>>> new = surgery.convert(net, "pool->conv(k=3)", (3, 32, 32), skip="features.3*")
>>> [s.type for s in surgery.sites(new, (3, 32, 32))]
['max', 'conv', 'conv']
"""

from __future__ import annotations

from .convert import Change, Conversion, Fit, SiteStatus, SurgeryWarning, convert, convert_detailed
from .find import KINDS, Analysis, Site, analyze, sites
from .policy import VALID_FORMS, Policy, Rule, Selector, parse_policy
from .recipe import load_converted, rebuild, save_converted

__all__ = [
    "KINDS",
    "VALID_FORMS",
    "Analysis",
    "Change",
    "Conversion",
    "Fit",
    "Policy",
    "Rule",
    "Selector",
    "Site",
    "SiteStatus",
    "SurgeryWarning",
    "analyze",
    "convert",
    "convert_detailed",
    "load_converted",
    "parse_policy",
    "rebuild",
    "save_converted",
    "sites",
]
