r"""Judging (in the worker): values and comparison of two parsed answers, and the worker's request handler.

sympy, latex2sympy and Math-Verify are imported lazily, so importing this module stays fast; the worker pays the
imports once, in its warm-up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .normalize import _REL_RE, _canon, _normalize
from .structure import (_encloses, _mcq_letter, _parse, _parse_pred_alternatives, _plain_text, _pred_mcq_letter,
                        _text_answer)

class _Ctx:
    """Per-comparison notes: whether some gold piece could not be parsed (then a mismatch is an 'error')."""

    def __init__(self) -> None:
        self.gold_unparsed: str | None = None


@dataclass(frozen=True)
class _Num:
    value: Fraction
    decimal: bool  # written with a decimal point (or scientific notation with one)
    places: int  # decimal places of the written value
    sig: int  # significant digits written


_INT_RE = re.compile(r"([+-]?)(\d+)")
_REPEAT_RE = re.compile(r"([+-]?)(\d*)\.(\d*)\\(?:overline|bar)\{(\d+)\}")
_DEC_RE = re.compile(r"([+-]?)(\d*)\.(\d+)")
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_SLASH_RE = re.compile(r"([+-]?\d+)\s*/\s*([+-]?\d+)")
_MIXED_RE = re.compile(r"([+-]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_SCI_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?")
_ENOT_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)")


def _sign(s: str) -> int:
    return -1 if s == "-" else 1


def _decimal_num(sign: str, mantissa: str, exp: int = 0) -> _Num:
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac)) * Fraction(10) ** exp
    return _Num(_sign(sign) * value, True, max(len(frac) - exp, 0), len(digits))


def _to_number(s: str) -> _Num | None:
    """Exact value of a plain number (int, decimal, a/b, \\frac{a}{b}, mixed number, scientific), else None."""
    s = s.replace(" ", "")
    s = re.sub(r"^\+", "", s)
    if re.fullmatch(r"-?\{.*\}", s) and _encloses(s.lstrip("-")):
        s = s.replace("{", "", 1)[:-1] if s.startswith("{") else "-" + s[2:-1]
    try:
        if m := _INT_RE.fullmatch(s):
            return _Num(Fraction(_sign(m.group(1)) * int(m.group(2))), False, 0, len(m.group(2).lstrip("0") or "0"))
        if m := _REPEAT_RE.fullmatch(s):  # 0.1\overline{6} = 1/6
            whole, fixed, rep = int(m.group(2) or "0"), m.group(3), m.group(4)
            value = whole + Fraction(int(fixed or "0"), 10 ** len(fixed)) + Fraction(
                int(rep), 10 ** len(fixed) * (10 ** len(rep) - 1))
            return _Num(_sign(m.group(1)) * value, False, 0, 0)
        if m := _DEC_RE.fullmatch(s):
            return _decimal_num(m.group(1), f"{m.group(2)}.{m.group(3)}")
        if m := _FRAC_RE.fullmatch(s):
            den = int(m.group(3))
            return None if den == 0 else _Num(_sign(m.group(1)) * Fraction(int(m.group(2)), den), False, 0, 0)
        if m := _SLASH_RE.fullmatch(s):
            den = int(m.group(2))
            return None if den == 0 else _Num(Fraction(int(m.group(1)), den), False, 0, 0)
        if m := _MIXED_RE.fullmatch(s):
            whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
            if 0 < num < den:  # "1\frac{4}{5}" is 1 4/5; "2\frac{6}{3}" is not a mixed number
                return _Num(_sign(m.group(1)) * (whole + Fraction(num, den)), False, 0, 0)
            return None
        if (m := _SCI_RE.fullmatch(s)) or (m := _ENOT_RE.fullmatch(s)):
            exp = int(m.group(3))
            if abs(exp) > 400:  # leave absurd exponents to sympy (and to the timeout)
                return None
            mant = m.group(2)
            if "." not in mant:
                mant += "."
            return _decimal_num(m.group(1), mant, exp)
    except ValueError:  # e.g. more digits than int() accepts
        return None
    return None


def _literal_matches(lit: _Num, v: Fraction) -> bool:
    """A decimal literal matches an exact value if equal, or (>= 6 significant digits) rounded/truncated from it."""
    if lit.value == v:
        return True
    if lit.sig < 6:
        return False
    unit = Fraction(1, 10 ** lit.places)
    if abs(v - lit.value) <= unit / 2:
        return True
    trunc = Fraction(int(v / unit)) * unit  # int() truncates toward zero
    return trunc == lit.value


def _num_eq(g: _Num, p: _Num) -> bool:
    if g.value == p.value:
        return True
    if g.decimal and p.decimal:
        coarse, fine = (g, p) if g.places <= p.places else (p, g)
        return _literal_matches(coarse, fine.value)
    if g.decimal:
        return _literal_matches(g, p.value)
    if p.decimal:
        return _literal_matches(p, g.value)
    return False


_SYMPY = None


def _sympy_mod():
    """Import sympy and the latex parser on first use (the worker pays this once)."""
    global _SYMPY
    if _SYMPY is None:
        import mpmath
        import sympy
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig, NormalizationConfig, latex2sympy
        norm = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=False,
                                   boxed="none", equations=False)
        conv = ConversionConfig(interpret_as_mixed_fractions=False, interpret_simple_eq_as_assignment=False,
                                interpret_contains_as_eq=True, lowercase_symbols=True)
        _SYMPY = (sympy, mpmath, latex2sympy, norm, conv)
    return _SYMPY


_SYM_CACHE: dict[str, object] = {}
_UNPARSED = object()


def _to_sympy(s: str):
    """sympy object for a normalized leaf, or None if it does not parse as a whole."""
    if s in _SYM_CACHE:
        v = _SYM_CACHE[s]
        return None if v is _UNPARSED else v
    result = _UNPARSED
    # "4 5" would parse as 9 (juxtaposed numbers); two numbers side by side are not one value.
    if not re.search(r"(?<![\d_^.])\d+(?:\.\d+)?\s+\.?\d", s):
        sympy, _, latex2sympy, norm, conv = _sympy_mod()
        try:
            expr = latex2sympy(s, is_real=None, convert_degrees=False, normalization_config=norm,
                               conversion_config=conv)
            if isinstance(expr, sympy.Basic) or hasattr(expr, "shape"):
                result = _post_sympy(expr)
        except Exception:  # the parser raises plain Exception on bad input
            result = _mv_parse(s)
    if len(_SYM_CACHE) > 4096:
        _SYM_CACHE.clear()
    _SYM_CACHE[s] = result
    return None if result is _UNPARSED else result


def _post_sympy(expr):
    """Decimal literals as exact rationals; the symbol i as the imaginary unit."""
    sympy = _sympy_mod()[0]
    try:
        floats = expr.atoms(sympy.Float)
        if floats:
            expr = expr.xreplace({f: sympy.Rational(str(f)) for f in floats})
        i_syms = [s for s in expr.free_symbols if s.name == "i"]
        if i_syms:
            expr = expr.xreplace({i_syms[0]: sympy.I})
    except Exception:
        pass
    return expr


def _mv_parse(s: str):
    """Fallback parser: Math-Verify on the whole string as one box (its extra normalizations), or _UNPARSED."""
    try:
        from math_verify import parse
        from math_verify.parser import LatexExtractionConfig
        from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
        cfg = LatexExtractionConfig(try_extract_without_anchor=False, boxed_match_priority=0,
                                    normalization_config=NormalizationConfig(basic_latex=True, units=True,
                                                                             malformed_operators=False, nits=False,
                                                                             boxed="all", equations=False))
        res = parse("\\boxed{" + s + "}", extraction_config=[cfg], fallback_mode="no_fallback",
                    parsing_timeout=None)
        sympy = _sympy_mod()[0]
        if res and isinstance(res[0], sympy.Basic):
            return _post_sympy(res[0])
    except Exception:
        pass
    return _UNPARSED


def _mpc(expr, prec: int = 60):
    """expr evaluated to `prec` digits as an mpmath complex, or None if it is not a finite number."""
    sympy, mpmath, *_ = _sympy_mod()
    try:
        if getattr(expr, "free_symbols", None) or not isinstance(expr, sympy.Expr):
            return None
        v = sympy.N(expr, prec)
        re_, im_ = v.as_real_imag()
        if not (re_.is_Number and im_.is_Number) or not (re_.is_finite and im_.is_finite):
            return None
        with mpmath.workprec(int(prec * 3.4) + 20):
            return mpmath.mpc(mpmath.mpf(sympy.Float(re_, prec)), mpmath.mpf(sympy.Float(im_, prec)))
    except Exception:
        return None


def _close(a, b, rel: float) -> bool:
    mpmath = _sympy_mod()[1]
    with mpmath.workprec(240):
        scale = max(abs(a), abs(b))
        return bool(abs(a - b) <= rel * scale)


def _as_fraction(v) -> Fraction | None:
    """Exact Fraction of a real mpmath value (its binary expansion, ~60 digits)."""
    mpmath = _sympy_mod()[1]
    if v is None or v.imag != 0:
        return None
    man, exp = mpmath.mpf(v.real).man_exp
    return Fraction(int(man)) * Fraction(2) ** int(exp)


_MAX_EXACT_BITS = 4_000_000  # an exact power bigger than this is left to numbers (and to the timeout)
_MAX_CHECK_DIGITS = 20_000  # precision cap when an irrational is checked against a huge rational


def _exact_rational(expr) -> Fraction | None:
    """Exact value of a constant built from rationals by +, *, integer powers, factorials and binomials, or None.

    The parser leaves ``\\frac{2^{2005}+1}{3\\cdot 2^{2006}}`` unevaluated; 60-digit numbers cannot tell it from 1/6.
    """
    sympy = _sympy_mod()[0]
    if isinstance(expr, sympy.Rational):
        return Fraction(int(expr.p), int(expr.q))
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        parts = [_exact_rational(a) for a in expr.args]
        if any(p is None for p in parts):
            return None
        out = Fraction(0) if isinstance(expr, sympy.Add) else Fraction(1)
        for p in parts:
            out = out + p if isinstance(expr, sympy.Add) else out * p
        return out
    if isinstance(expr, sympy.Pow) and isinstance(expr.exp, sympy.Integer):
        base = _exact_rational(expr.base)
        e = int(expr.exp)
        if base is None or (base == 0 and e < 0):
            return None
        bits = max(base.numerator.bit_length(), base.denominator.bit_length(), 1)
        return base ** e if bits * abs(e) <= _MAX_EXACT_BITS else None
    if isinstance(expr, (sympy.factorial, sympy.binomial)) and all(
            isinstance(a, sympy.Integer) and 0 <= a <= 20_000 for a in expr.args):
        value = expr.func(*expr.args)  # evaluated now: small integer arguments only
        return Fraction(int(value)) if isinstance(value, sympy.Integer) else None
    return None


def _digits(v: Fraction) -> int:
    """Decimal digits of numerator and denominator together (from bit lengths: str() refuses huge ints)."""
    return int((abs(v.numerator).bit_length() + v.denominator.bit_length()) * 0.30103) + 2


def _constant_eq(G, P) -> bool:
    """Two constants: exactly when both are rational, else numerically at a precision that separates
    neighbouring integers of their size (so a 59-digit integer never equals its successor)."""
    mpmath = _sympy_mod()[1]
    rg, rp = _exact_rational(G), _exact_rational(P)
    if rg is not None and rp is not None:
        return rg == rp
    a, b = _mpc(G), _mpc(P)
    if a is None or b is None:
        return _mv_verify(G, P)
    if not _close(a, b, 1e-40):
        return False
    magnitude = int(mpmath.log10(max(abs(a), abs(b)))) if max(abs(a), abs(b)) > 1 else 0
    need = max([magnitude] + [_digits(r) for r in (rg, rp) if r is not None])
    if need <= 20:
        return True
    # Twice the digits: a root near an integer N, such as \sqrt{N^2+1}, differs from it by about 1/N^2 relative.
    need = min(2 * need, _MAX_CHECK_DIGITS)
    a, b = _mpc(G, need + 60), _mpc(P, need + 60)
    return a is not None and b is not None and _close(a, b, mpmath.mpf(10) ** -(need + 40))


# Fixed "random" evaluation points: distinct per symbol, away from 0 and +-1. Four are positive (so identities that
# need a positive variable, like \sqrt{1/n} = 1/\sqrt{n}, have real points to be checked at), two have negative
# coordinates so that |x| != x and \sqrt{x^2} != x.
_POINTS = [(1.37, 2.11, 0.59, 1.73, 2.89, 0.83), (0.71, 1.53, 2.47, 0.93, 1.19, 2.31),
           (-2.23, 0.67, -1.29, 2.71, -0.77, 1.61), (-1.91, -2.57, -0.87, -1.43, -2.03, -0.53),
           (3.41, 0.47, 4.13, 2.63, 0.39, 3.07), (5.23, 3.37, 1.87, 4.61, 3.53, 0.73)]


def _point_subs(syms: list) -> list[dict]:
    """One substitution {symbol: Rational} per fixed point."""
    sympy = _sympy_mod()[0]
    return [{sym: sympy.Rational(str(point[j % len(point)])) + j // len(point) for j, sym in enumerate(syms)}
            for point in _POINTS]


def _point_values(expr_a, expr_b) -> list:
    """Values (a, b) of both expressions at each fixed point (same substitution for both); None where undefined."""
    syms = sorted(expr_a.free_symbols | expr_b.free_symbols, key=lambda x: x.name)
    out = []
    for sub in _point_subs(syms):
        try:
            out.append((_mpc(expr_a.xreplace(sub)), _mpc(expr_b.xreplace(sub))))
        except Exception:
            out.append((None, None))
    return out


_REAL_FN_CACHE: dict = {}


def _real_evaluator(expr, syms: list):
    """f(sub) -> True if expr evaluates in real floating point at the substitution (no square root of a negative,
    no complex step, no pole), False if not, None if that cannot be told (unsupported function, overflow)."""
    sympy = _sympy_mod()[0]
    key = (expr, tuple(syms))
    if key not in _REAL_FN_CACHE:
        if len(_REAL_FN_CACHE) > 1024:
            _REAL_FN_CACHE.clear()
        try:
            _REAL_FN_CACHE[key] = sympy.lambdify(syms, expr, modules="math")
        except Exception:
            _REAL_FN_CACHE[key] = None
    fn = _REAL_FN_CACHE[key]
    if fn is None:
        return lambda sub: None

    def real_at(sub: dict) -> bool | None:
        try:
            v = fn(*(float(sub[sym]) for sym in syms))
        except (ValueError, ZeroDivisionError):
            return False
        except Exception:  # TypeError from integer-only functions, OverflowError, ...
            return None
        if isinstance(v, complex):
            return False
        return None if not isinstance(v, (int, float)) else v == v and abs(v) != float("inf")
    return real_at


def _symbols(expr) -> set[str]:
    return {s.name for s in getattr(expr, "free_symbols", set())}


def _is_real(v) -> bool:
    return v.imag == 0 or abs(v.imag) <= 1e-45 * abs(v)


def _both_real(a, b, a_real: bool | None, b_real: bool | None) -> bool:
    r"""Both sides real at a point: computed in real arithmetic where that could be tried, else a real value.
    (\sqrt{x-1}\sqrt{x+1} at x = -2 is real only through complex steps: outside its real domain.)"""
    return all(_is_real(v) if flag is None else flag for v, flag in ((a, a_real), (b, b_real)))


def _positive_identity(G, P, thorough: bool) -> bool:
    """G - P is 0 for positive values of every variable, shown by sympy (auto-evaluation and expand; with
    `thorough`, simplify as well, which can be slow, so only when the numbers could not decide)."""
    sympy = _sympy_mod()[0]
    try:
        pos = {sym: sympy.Symbol(sym.name, positive=True) for sym in G.free_symbols | P.free_symbols}
        diff = G.xreplace(pos) - P.xreplace(pos)
        if diff == 0 or sympy.expand(diff) == 0:
            return True
        return thorough and sympy.count_ops(diff) <= 60 and sympy.simplify(diff) == 0
    except Exception:
        return False


def _function_eq(G, P) -> bool:
    """Expressions in free variables: equal where both are real and defined.

    At the fixed points where both values are real, they must agree (a disagreement there is decisive). With two
    or more such points that suffices; otherwise sympy's proof for positive variables, then the complex values.
    """
    syms = sorted(G.free_symbols | P.free_symbols, key=lambda x: x.name)
    g_real, p_real = _real_evaluator(G, syms), _real_evaluator(P, syms)
    pts, real = [], []
    for sub in _point_subs(syms):  # lazily: a wrong answer usually differs at the first real point
        try:
            a, b = _mpc(G.xreplace(sub)), _mpc(P.xreplace(sub))
        except Exception:
            continue
        if a is None or b is None:
            continue
        if _is_real(a) and _is_real(b) and _both_real(a, b, g_real(sub), p_real(sub)):
            if not _close(a, b, 1e-30):
                return False
            real.append((a, b))
        pts.append((a, b))
    if len(real) >= 2 or _positive_identity(G, P, thorough=False):
        return True
    if len(pts) >= 2:
        return all(_close(a, b, 1e-30) for a, b in pts)
    return _positive_identity(G, P, thorough=True) or _mv_verify(G, P)


def _expr_eq(G, P) -> bool:
    """Value equality of two parsed expressions (gold first)."""
    sympy = _sympy_mod()[0]
    if isinstance(G, sympy.Basic) and isinstance(P, sympy.Basic) and (G.has(sympy.zoo, sympy.nan) or
                                                                       P.has(sympy.zoo, sympy.nan)):
        return False  # "1:00" and "12:00" both parse to zoo: a parse of a non-number, never a value to compare
    try:
        if G == P:
            return True
    except Exception:
        pass
    is_g_mat, is_p_mat = hasattr(G, "shape"), hasattr(P, "shape")
    if is_g_mat or is_p_mat:
        if not (is_g_mat and is_p_mat) or G.shape != P.shape:
            return False
        return all(_expr_eq(a, b) for a, b in zip(G, P))
    if not (isinstance(G, sympy.Expr) and isinstance(P, sympy.Expr)):
        return _mv_verify(G, P)
    if G.has(sympy.oo, -sympy.oo) or P.has(sympy.oo, -sympy.oo):
        return False  # structural equality was checked above; infinities are not compared numerically
    if not G.free_symbols and not P.free_symbols:
        return _constant_eq(G, P)
    return _function_eq(G, P)


def _mv_verify(G, P, allow_set_relation_comp: bool = False) -> bool:
    """Math-Verify's comparison, gold first, its own timeout disabled (the worker's caller enforces ours)."""
    try:
        from math_verify import verify
        return bool(verify(G, P, timeout_seconds=None, allow_set_relation_comp=allow_set_relation_comp))
    except Exception:
        return False


def _leaf_eq(g: str, p: str, ctx: _Ctx) -> bool:
    if _canon(g) == _canon(p):
        return True
    gn, pn = _to_number(g), _to_number(p)
    if gn is not None and pn is not None:
        return _num_eq(gn, pn)
    G = _to_sympy(g)
    if G is None:
        ctx.gold_unparsed = g
        return False
    P = _to_sympy(p)
    if P is None:
        return False
    # One side a decimal literal, the other an exact constant such as \sqrt{2}: the literal rule applies.
    for lit, other in ((gn, P), (pn, G)):
        if lit is not None and lit.decimal and not getattr(other, "free_symbols", True):
            exact = _exact_rational(other)
            if exact is not None:
                return _literal_matches(lit, exact)
            a, b = _mpc(other), _mpc(G if other is P else P)
            if a is not None and b is not None and _close(a, b, 1e-40):
                return True  # exactly the literal's value, e.g. "0.2" against \sqrt{0.04}
            v = _as_fraction(a)
            return v is not None and _literal_matches(lit, v)
    return _expr_eq(G, P)


def _is_var_lhs(s: str) -> bool:
    """A variable-like left-hand side: x, y_1, \\theta, f(x), AB."""
    s = _canon(s)
    return bool(re.fullmatch(r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?'*|[A-Z]{2,3}"
                             r"|[A-Za-z]+(?:\^\{[^{}]*\}|\^-?\d|'+)?\([^()]*\)", s))


def _is_symbolic_lhs(s: str) -> bool:
    """An lhs that names a quantity (x, a+b, f(2), \\angle ABC), i.e. has no digits outside subscripts/arguments."""
    t = re.sub(r"_\{?\w+\}?", "", _canon(s))
    t = re.sub(r"^[A-Za-z]+(?:\^\{[^{}]*\}|\^-?\d|'+)?\([^()]*\)$", "f", t)
    return bool(t) and not re.search(r"\d", t) and bool(re.search(r"[A-Za-z]", t))


def _multiset_eq(gs: list, ps: list, ctx: _Ctx) -> bool:
    """Unordered equality: a perfect matching between gold and predicted items (Kuhn's algorithm)."""
    if len(gs) != len(ps):
        return False
    cache: dict[tuple[int, int], bool] = {}

    def eq(i: int, j: int) -> bool:
        if (i, j) not in cache:
            cache[(i, j)] = _eq(gs[i], ps[j], ctx)
        return cache[(i, j)]

    match_of_p: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in range(len(ps)):
            if j not in seen and eq(i, j):
                seen.add(j)
                if j not in match_of_p or augment(match_of_p[j], seen):
                    match_of_p[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(len(gs)))


def _ordered_eq(gs: list, ps: list, ctx: _Ctx) -> bool:
    return len(gs) == len(ps) and all(_eq(a, b, ctx) for a, b in zip(gs, ps))


def _equation_equiv(g_parts: list[str], p_parts: list[str]) -> bool:
    """Two equations are the same if lhs-rhs of one is a nonzero constant multiple of the other's."""
    G = [_to_sympy(x) for x in (g_parts[0], g_parts[-1])]
    P = [_to_sympy(x) for x in (p_parts[0], p_parts[-1])]
    sympy = _sympy_mod()[0]
    if any(x is None or not isinstance(x, sympy.Expr) for x in G + P):
        return False
    dg, dp = G[0] - G[1], P[0] - P[1]
    if not dg.free_symbols:
        return False
    mpmath = _sympy_mod()[1]
    ratios = []
    with mpmath.workprec(240):
        tiny = mpmath.mpf(10) ** -40
        for a, b in _point_values(dg, dp):
            if a is None or b is None:
                continue
            if abs(a) < tiny or abs(b) < tiny:
                if abs(a) < tiny and abs(b) < tiny:
                    continue  # both vanish at this point: no information
                return False
            ratios.append(a / b)
    return len(ratios) >= 2 and all(_close(r, ratios[0], 1e-25) for r in ratios)


def _eq_node(node: tuple) -> list[str] | None:
    return node[1] if node[0] == "eq" else None


def _equation_eq(g: tuple, p: tuple, ctx: _Ctx) -> bool:
    ge, pe = _eq_node(g), _eq_node(p)
    if ge and pe:
        if _is_var_lhs(ge[0]) and _canon(ge[0]) == _canon(pe[0]):
            if _eq(_parse(ge[-1]), _parse(pe[-1]), ctx):
                return True
        return _equation_equiv(ge, pe)
    if ge:  # gold "x = 5", prediction "5"
        return _is_var_lhs(ge[0]) and len(ge) == 2 and _eq(_parse(ge[1]), p, ctx)
    # gold "5", prediction "x = 5" or "a+b = 2+3 = 5": the value is the last right-hand side
    if _is_symbolic_lhs(pe[0]):
        return _eq(g, _parse(pe[-1]), ctx)
    # "1 + 11 + 37 = 49": a worked computation, right only if every side is a constant with the gold's value
    return _is_constant_chain(pe) and all(_eq(g, _parse(side), ctx) for side in pe)


def _is_constant_chain(sides: list[str]) -> bool:
    """Every side of an equation parses to a number-valued expression with no variables."""
    sympy = _sympy_mod()[0]
    exprs = [_to_sympy(side) for side in sides]
    return all(isinstance(e, sympy.Expr) and not e.free_symbols for e in exprs)


def _node_to_set(node: tuple):
    """sympy Set for interval-like / relation nodes (used when an inequality is compared), or None."""
    sympy = _sympy_mod()[0]
    kind = node[0]
    if kind == "brk" and len(node[3]) == 2 and all(n[0] == "leaf" for n in node[3]):
        a, b = (_to_sympy(n[1]) for n in node[3])
        if a is None or b is None:
            return None
        return sympy.Interval(a, b, left_open=node[1] == "(", right_open=node[2] == ")")
    if kind == "union":
        sets = [_node_to_set(n) for n in node[1]]
        return None if any(s is None for s in sets) else sympy.Union(*sets)
    if kind == "rel":
        expr = _to_sympy(node[1])
        if expr is None or len(getattr(expr, "free_symbols", ())) != 1:
            return None
        try:
            return expr.as_set()
        except Exception:
            return None
    if kind == "list" and any(n[0] == "rel" for n in node[1]):  # "x < 1 or x > 2", "0 < x < 36, x \neq 9"
        sets = [_node_to_set(n) for n in node[1]]
        variables = {sym for n in node[1] if n[0] == "rel" for sym in _symbols(_to_sympy(n[1]))}
        if any(s is None for s in sets) or len(variables) != 1:  # "x > 0, y > 0" is not a set of numbers
            return None
        return _combine_conditions(node[1], sets)
    if kind == "leaf":
        v = _to_sympy(node[1])
        return v if isinstance(v, sympy.Set) else None
    return None


def _is_exclusion(node: tuple) -> bool:
    """A condition that only excludes values: ``x \\neq 9``."""
    rels = _REL_RE.findall(node[1]) if node[0] == "rel" else []
    return bool(rels) and all(r in ("\\neq", "\\ne") for r in rels)


def _combine_conditions(items: list[tuple], sets: list):
    """The solution set of a list of conditions. Normalization turned "and", "or" and commas all into commas, so
    the reading is chosen by meaning: exclusions (``x \\neq 9``) always restrict; the other conditions hold
    together (``x > 0, x < 5``) unless that leaves nothing, in which case they are alternatives (``x < 2, x > 3``).
    """
    sympy = _sympy_mod()[0]
    exclusions = [st for n, st in zip(items, sets) if _is_exclusion(n)]
    conditions = [st for n, st in zip(items, sets) if not _is_exclusion(n)]
    base = sympy.S.Reals
    if conditions:
        base = sympy.Intersection(*conditions)
        if base.is_empty:
            base = sympy.Union(*conditions)
    return sympy.Intersection(base, *exclusions) if exclusions else base


def _set_eq(g: tuple, p: tuple) -> bool:
    A, B = _node_to_set(g), _node_to_set(p)
    if A is not None and B is not None:
        try:
            if A == B:
                return True
            return bool(A.symmetric_difference(B).is_empty)
        except Exception:
            return False
    if g[0] == "rel" and p[0] == "rel":
        G, P = _to_sympy(g[1]), _to_sympy(p[1])
        return G is not None and P is not None and _mv_verify(G, P)
    return False


_COLLECTIONS = ("list", "set")


def _eq(g: tuple, p: tuple, ctx: _Ctx) -> bool:
    """Structural equality, gold first."""
    gk, pk = g[0], p[0]
    if gk == "approx":  # a gold "a \approx b" means a
        return _eq(g[1][0], p, ctx)
    if pk == "approx":
        # "1/3 \approx 0.333": the exact part is the answer; the rounded part counts only for a decimal gold
        if _eq(g, p[1][0], ctx):
            return True
        gold_num = _to_number(g[1]) if gk == "leaf" else None
        if gold_num is None or not gold_num.decimal or p[1][0][0] != "leaf":
            return False
        exact = _to_sympy(p[1][0][1])
        exact_value = _as_fraction(_mpc(exact)) if exact is not None else None
        for q in p[1][1:]:
            q_num = _to_number(q[1]) if q[0] == "leaf" else None
            # the rounded value must match the gold and be a rounding of the stated exact value
            if (q_num is not None and exact_value is not None and _eq(g, q, ctx)
                    and abs(exact_value - q_num.value) <= Fraction(1, 2 * 10 ** q_num.places) * (1 + 1e-9)):
                return True
        return False
    if gk == "pm":
        g = ("list", g[1])
        gk = "list"
    if pk == "pm":
        p = ("list", p[1])
        pk = "list"
    if gk == "rel" or pk == "rel" or (gk == "list" and any(n[0] == "rel" for n in g[1])) or (
            pk == "list" and any(n[0] == "rel" for n in p[1])):
        return _set_eq(g, p)
    if gk in _COLLECTIONS and pk in _COLLECTIONS:
        return _multiset_eq(g[1], p[1], ctx)
    if gk in _COLLECTIONS:
        return len(g[1]) == 1 and _eq(g[1][0], p, ctx)
    if pk in _COLLECTIONS:
        if len(p[1]) == 1:
            return _eq(g, p[1][0], ctx)
        if gk == "brk" and g[1:3] == ("(", ")"):  # "(1, 2)" answered as "1, 2": read as the same ordered pair
            return _ordered_eq(g[3], p[1], ctx)
        if gk == "eq" and _is_var_lhs(g[1][0]) and len(g[1]) == 2:  # gold "x = 1, 2"? compare its rhs
            return _eq(_parse(g[1][1]), p, ctx)
        return False
    if gk == "eq" or pk == "eq":
        return _equation_eq(g, p, ctx)
    if gk == "brk" and pk == "brk":
        return g[1:3] == p[1:3] and _ordered_eq(g[3], p[3], ctx)
    if gk == "union" and pk == "union":
        return _multiset_eq(g[1], p[1], ctx)
    if gk == "mat":
        if pk == "mat":
            return len(g[1]) == len(p[1]) and all(_ordered_eq(a, b, ctx) for a, b in zip(g[1], p[1]))
        # a column or row vector written as a tuple
        flat = [c for row in g[1] for c in row]
        vector = len(g[1]) == 1 or all(len(row) == 1 for row in g[1])
        return vector and pk == "brk" and p[1:3] == ("(", ")") and _ordered_eq(flat, p[3], ctx)
    if gk == "base" or pk == "base":
        if gk == "base" and pk == "base":
            return g[1:] == p[1:]
        if gk == "base":  # "52_8" answered as "52": the digits are the answer
            return p[0] == "leaf" and _canon(p[1]).lstrip("0") == g[1].lstrip("0") and bool(
                re.fullmatch(r"[0-9A-Za-z]+", _canon(p[1])))
        num = _to_number(g[1]) if gk == "leaf" else None  # gold "42", prediction "52_8": same value
        return num is not None and num.value == int(p[1], p[2])
    if gk == "leaf" and pk == "leaf":
        return _leaf_eq(g[1], p[1], ctx)
    if {gk, pk} <= {"brk", "union", "leaf"}:
        # an interval against a union ([0,1) \cup [1,2) vs [0,2)) or a named set (\mathbb{R}, \emptyset)
        return _set_eq(g, p)
    return False


_CLOCK_RE = re.compile(r"(\d{1,2}):([0-5]\d)(am|pm)?")


def _clock_time(raw: str) -> tuple[int, int, str | None] | None:
    """(hour, minute, "am"/"pm"/None) if `raw` is a time of day such as ``9:30`` or ``\text{9:30 a.m.}``."""
    s = _plain_text(raw).replace(r"\,", "").replace("~", "")
    m = _CLOCK_RE.fullmatch(re.sub(r"[\s.]", "", s))
    if not m or int(m.group(1)) > 24:
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3)


def _clock_eq(g: tuple[int, int, str | None], p: tuple[int, int, str | None]) -> bool:
    """Same time of day; "9:30 pm" is 21:30, and a time without am/pm may give either reading's hour."""
    def hour24(t):
        h, _, half = t
        return h + 12 if half == "pm" and h < 12 else 0 if half == "am" and h == 12 else h
    if g[1] != p[1]:
        return False
    if (g[2] is None) == (p[2] is None):
        return hour24(g) == hour24(p)
    plain, marked = (g, p) if g[2] is None else (p, g)
    return plain[0] in (marked[0], hour24(marked))


def _judge(pred: str, gold: str) -> tuple[bool, str, str]:
    """(correct, status, reason) for an extracted answer against a gold answer. Runs in the worker."""
    gold_clock = _clock_time(gold)
    if gold_clock is not None:  # "10:30" is not the ratio 1/3 (nor "1:00" a division by zero)
        pred_clock = _clock_time(pred)
        ok = pred_clock is not None and _clock_eq(gold_clock, pred_clock)
        return ok, "correct" if ok else "wrong_answer", f"time of day {'matches' if ok else 'differs'}"
    gold_text = _text_answer(gold)
    if gold_text is not None and _mcq_letter(gold_text.upper()) is None:
        ok = _plain_text(pred) == gold_text
        return ok, "correct" if ok else "wrong_answer", f"text answer {'matches' if ok else 'differs'}"
    gn, pn = _normalize(gold), _normalize(pred)
    if not gn:
        return False, "error", "gold answer is empty after normalization"
    if not pn:
        return False, "no_answer", "boxed answer is empty"
    letter = _mcq_letter(gn)
    if letter is not None:
        ok = _pred_mcq_letter(pn) == letter
        return ok, "correct" if ok else "wrong_answer", f"multiple choice ({letter})"
    if _canon(gn) == _canon(pn):
        return True, "correct", "identical after normalization"
    ctx = _Ctx()
    gnode = _parse(gn)
    for pnode in _parse_pred_alternatives(pn):
        if _eq(gnode, pnode, ctx):
            return True, "correct", f"equivalent ({gnode[0]})"
    if ctx.gold_unparsed is not None:
        return False, "error", f"could not parse gold piece {ctx.gold_unparsed[:200]!r}"
    return False, "wrong_answer", f"not equivalent ({gnode[0]} vs {_parse(pn)[0]})"



_MAX_COLLAPSED_BOXES = 20  # comparing boxes pairwise is quadratic; a longer run of boxes is a list answer


def _same_value(a: str, b: str) -> bool:
    """Two boxes of one response hold the same value (each read as the other's gold)."""
    return _judge(a, b)[0] or _judge(b, a)[0]


def _collapse_boxes(boxes: list[str]) -> str:
    r"""The answer several adjacent boxes give: one value if they all agree (``\boxed{\frac65}`` or ``\boxed{1.2}``),
    else the list of their distinct values, in order."""
    distinct: list[str] = []
    for box in boxes:
        if not any(_same_value(box, d) for d in distinct):
            distinct.append(box)
    return boxes[-1] if len(distinct) == 1 else ", ".join(distinct)


def worker_handler(request: dict) -> dict:
    """One grading request, run inside a worker process: {"p": answer, "g": gold, "boxes": [...]} -> reply."""
    pred = request["p"]
    boxes = request.get("boxes") or []
    if 1 < len(boxes) <= _MAX_COLLAPSED_BOXES:
        pred = _collapse_boxes(boxes)
    correct, status, reason = _judge(pred, request["g"])
    if len(boxes) > 1 and pred == boxes[-1]:
        reason += f"; its {len(boxes)} boxes hold one value"
    return {"correct": bool(correct), "status": status, "reason": reason}


# Each worker grades these before it declares itself ready, so no item pays the imports inside its timeout.
WARMUP_REQUESTS = ({"p": r"\frac{1}{2}", "g": "0.5"}, {"p": "x^2-1", "g": "(x-1)(x+1)"})
