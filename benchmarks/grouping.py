"""Bottom-up grouping speed: `part_fields.group` against the same algorithm written as loops.

    python -m benchmarks.grouping [--json] [--images 10] [--repeats 5]

Scenes of 1, 5 and 20 people (articulated stick figures, a tenth of the joints unlabelled) at
368x432, encoded at stride 8 (`part_fields.encode`, COCO limb table) and grouped back, per image:

* ours: `part_fields.group` (peaks by 4-neighbourhood NMS with sub-pixel refinement, the PAF line
  integrals of every candidate limb, the joint-by-joint greedy assembly, the fragment merge);
* loop: `loop_group` below, the same steps as plain Python loops over pixels, candidate pairs,
  samples and people (scalar arithmetic), the way the algorithm reads in OpenPose's demo;
* ours_assembly / loop_assembly: the host half alone (`group_peaks` from found peaks), what the
  bottom-up task runs on the host after finding peaks on the device.

Both give the same people (checked: joints within 1e-3 px, same counts). One thread (BLAS pinned),
CPU time of this process (`time.process_time`), best of `--repeats` passes over the images.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from aggpose_jax.keypoints import grouping, metainfo, part_fields  # noqa: E402

INPUT_HW, STRIDE = (368, 432), 8
LIMBS = part_fields.limbs_for(metainfo.COCO)
_clock = time.process_time

_TEMPLATE = np.array([
    [0, -0.40], [0.025, -0.42], [-0.025, -0.42], [0.06, -0.41], [-0.06, -0.41], [0.11, -0.30],
    [-0.11, -0.30], [0.15, -0.13], [-0.15, -0.13], [0.17, 0.02], [-0.17, 0.02], [0.07, 0.03],
    [-0.07, 0.03], [0.08, 0.27], [-0.08, 0.27], [0.08, 0.50], [-0.08, 0.50],
])  # fmt: skip


def make_scene(rng: np.random.Generator, num_people: int) -> np.ndarray:
    """(P, 17, 3) people of 60-200 px placed at random in the input, bent limbs, 10 % unlabelled."""
    people = []
    for _ in range(num_people):
        h = rng.uniform(60, 200)
        p = _TEMPLATE * h + rng.normal(0, 0.03 * h, _TEMPLATE.shape)
        lo, hi = -p.min(0), np.array([INPUT_HW[1] - 1, INPUT_HW[0] - 1]) - p.max(0)
        p = p + rng.uniform(lo, np.maximum(hi, lo + 1))
        v = rng.choice([0, 2], size=17, p=[0.1, 0.9])
        people.append(np.concatenate([p, v[:, None]], axis=1))
    return np.stack(people)


# --- the loop implementation ---------------------------------------------------------------------


def loop_find_peaks(heatmaps: np.ndarray, threshold: float, stride: float) -> list[list[tuple]]:
    """Per keypoint, [(x, y, score)] in input pixels, by descending score: pixel by pixel."""
    h, w, k = heatmaps.shape
    hm = heatmaps.astype(np.float64).tolist()
    out = []
    lg = lambda v: math.log(max(v, 1e-10))  # noqa: E731
    for c in range(k):
        found = []
        for y in range(h):
            for x in range(w):
                v = hm[y][x][c]
                if v <= threshold:
                    continue
                left = hm[y][x - 1][c] if x > 0 else -math.inf
                up = hm[y - 1][x][c] if y > 0 else -math.inf
                right = hm[y][x + 1][c] if x < w - 1 else -math.inf
                down = hm[y + 1][x][c] if y < h - 1 else -math.inf
                if not (v > left and v > up and v >= right and v >= down):
                    continue
                has = (x > 0, x < w - 1, y > 0, y < h - 1)
                nb = (left, right, up, down)
                curv = [
                    lg(nb[0]) - 2 * lg(v) + lg(nb[1]) if has[0] and has[1] else 0.0,
                    lg(nb[2]) - 2 * lg(v) + lg(nb[3]) if has[2] and has[3] else 0.0,
                ]
                offsets = []
                for axis in (0, 1):
                    hm_, hp_ = has[2 * axis], has[2 * axis + 1]
                    m_, p_ = nb[2 * axis], nb[2 * axis + 1]
                    if hm_ and hp_:
                        c2, slope = curv[axis], 0.5 * (lg(p_) - lg(m_))
                    elif hm_ or hp_:
                        c2 = curv[1 - axis]
                        slope = lg(v) - lg(m_) + 0.5 * c2 if hm_ else lg(p_) - lg(v) - 0.5 * c2
                    else:
                        c2, slope = 0.0, 0.0
                    off = -slope / c2 if c2 < -1e-12 else 0.0
                    offsets.append(min(max(off, -0.5), 0.5))
                px = (x + offsets[0] + 0.5) * stride - 0.5
                py = (y + offsets[1] + 0.5) * stride - 0.5
                found.append((px, py, v))
        found.sort(key=lambda t: -t[2])
        out.append(found)
    return out


def loop_limb_score(pa, pb, paf, limb, stride, samples=10, thr=0.05, min_above=0.8):
    """One candidate pair's line integral (-inf when it fails), sample by sample."""
    h, w = len(paf), len(paf[0])
    xa, ya = (pa[0] + 0.5) / stride - 0.5, (pa[1] + 0.5) / stride - 0.5
    xb, yb = (pb[0] + 0.5) / stride - 0.5, (pb[1] + 0.5) / stride - 0.5
    dx, dy = xb - xa, yb - ya
    length = math.hypot(dx, dy)
    if length <= 1e-6:
        return -math.inf
    ux, uy = dx / length, dy / length
    dots = []
    for t in np.linspace(0.0, 1.0, samples).tolist():
        ix = min(max(round(xa + t * dx), 0), w - 1)
        iy = min(max(round(ya + t * dy), 0), h - 1)
        vx, vy = paf[iy][ix][limb]
        dots.append(vx * ux + vy * uy)
    score = sum(dots) / samples + min(0.5 * h / length - 1.0, 0.0)
    needed = math.ceil(min_above * samples - 1e-9)
    return score if sum(d > thr for d in dots) >= needed and score > 0 else -math.inf


def loop_greedy(pairs: list[tuple[float, int, int]]) -> list[tuple[int, int, float]]:
    """Pairs (score, row, col) taken by descending score, each row and column once."""
    rows, cols, taken = set(), set(), []
    for s, r, c in sorted(pairs, key=lambda t: -t[0]):
        if r not in rows and c not in cols:
            rows.add(r), cols.add(c), taken.append((r, c, s))
    return taken


def loop_group_peaks(peaks, pafs, limbs, stride, min_parts=3, min_score=0.2):
    """The assembly of `grouping.group_peaks`, person by person and pair by pair."""
    paf = pafs.tolist()
    limbs = [tuple(map(int, e)) for e in limbs]
    k = len(peaks)
    scores = {}
    for li, (a, b) in enumerate(limbs):
        for i, pa in enumerate(peaks[a]):
            for j, pb in enumerate(peaks[b]):
                s = loop_limb_score(pa, pb, paf, li, stride)
                if s > -math.inf:
                    scores[li, i, j] = s
    order = list(dict.fromkeys(i for e in limbs for i in e))
    rank = {t: r for r, t in enumerate(order)}
    people, totals = [], []  # people: dict type -> candidate index
    for b in order:
        affinity = {}
        for li, (x, y) in enumerate(limbs):
            if b not in (x, y) or rank[x + y - b] > rank[b]:
                continue
            a = x + y - b
            for p, person in enumerate(people):
                if a not in person:
                    continue
                for j in range(len(peaks[b])):
                    key = (li, person[a], j) if x == a else (li, j, person[a])
                    if key in scores:
                        affinity[p, j] = affinity.get((p, j), 0.0) + scores[key]
        taken = loop_greedy([(s, p, j) for (p, j), s in affinity.items()])
        used = set()
        for p, j, s in taken:
            people[p][b] = j
            totals[p] += s + peaks[b][j][2]
            used.add(j)
        for j in range(len(peaks[b])):
            if j not in used:
                people.append({b: j})
                totals.append(peaks[b][j][2])
    owner = {(t, j): p for p, person in enumerate(people) for t, j in person.items()}
    merges = []
    for (li, i, j), s in scores.items():
        a, b = limbs[li]
        pa, pb = owner.get((a, i)), owner.get((b, j))
        if pa is not None and pb is not None and pa != pb:
            merges.append((s, pa, pb))
    root = list(range(len(people)))
    for s, x, y in sorted(merges, key=lambda t: -t[0]):
        while root[x] != x:
            x = root[x]
        while root[y] != y:
            y = root[y]
        if x == y or set(people[x]) & set(people[y]):
            continue
        people[x].update(people[y])
        people[y] = {}
        totals[x] += totals[y] + s
        totals[y] = 0.0
        root[y] = x
    out = []
    for person, total in zip(people, totals, strict=True):
        if len(person) >= min_parts and total >= min_score * max(len(person), 1):
            kp = np.zeros((k, 3))
            for t, j in person.items():
                kp[t] = peaks[t][j]
            out.append((kp[:, 2].sum() / k, kp))
    out.sort(key=lambda t: -t[0])
    return np.array([kp for _, kp in out]).reshape(-1, k, 3), np.array([s for s, _ in out])


def loop_group(heatmaps, pafs, limbs, stride):
    """Peaks and assembly, all loops."""
    return loop_group_peaks(loop_find_peaks(heatmaps, 0.1, stride), pafs, limbs, stride)


# --- timing --------------------------------------------------------------------------------------


def _best(fn, inputs, repeats: int) -> float:
    """Best over `repeats` passes of the mean CPU seconds per input."""
    best = math.inf
    for _ in range(repeats):
        start = _clock()
        for args in inputs:
            fn(*args)
        best = min(best, (_clock() - start) / len(inputs))
    return best


def _same(a, b) -> bool:
    return a[0].shape == b[0].shape and np.allclose(a[0], b[0], atol=1e-3)


def main() -> None:
    """Time both implementations at 1, 5 and 20 people; print ms per image and the speed-ups."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = {}
    for num_people in (1, 5, 20):
        rng = np.random.default_rng(num_people)
        maps = [
            part_fields.encode(
                make_scene(rng, num_people), input_hw=INPUT_HW, stride=STRIDE, limbs=LIMBS
            )
            for _ in range(args.images)
        ]
        whole = [(m["heatmaps"], m["pafs"]) for m in maps]
        peaks = [part_fields.find_peaks(m["heatmaps"], 0.1, stride=STRIDE) for m in maps]
        lists = [loop_find_peaks(m["heatmaps"], 0.1, STRIDE) for m in maps]
        for (hm, paf), pk, pl in zip(whole, peaks, lists, strict=True):
            ours = part_fields.group(hm, paf, limbs=LIMBS, stride=STRIDE)
            if not (_same(ours, loop_group(hm, paf, LIMBS, STRIDE))
                    and _same(ours, loop_group_peaks(pl, paf, LIMBS, STRIDE))):  # fmt: skip
                raise AssertionError(f"{num_people} people: the implementations disagree")
            del pk
        ours = _best(lambda h, p: part_fields.group(h, p, limbs=LIMBS, stride=STRIDE), whole,
                     args.repeats)  # fmt: skip
        loop = _best(lambda h, p: loop_group(h, p, LIMBS, STRIDE), whole, max(1, args.repeats // 3))
        ours_a = _best(
            lambda pk, p: grouping.group_peaks(pk, p, limbs=LIMBS, stride=STRIDE),
            [(pk, m["pafs"]) for pk, m in zip(peaks, maps, strict=True)], args.repeats,
        )  # fmt: skip
        loop_a = _best(
            lambda pl, p: loop_group_peaks(pl, p, LIMBS, STRIDE),
            [(pl, m["pafs"]) for pl, m in zip(lists, maps, strict=True)],
            max(1, args.repeats // 3),
        )  # fmt: skip
        row = {
            "ours_ms": round(1e3 * ours, 2), "loop_ms": round(1e3 * loop, 1),
            "speedup": round(loop / ours, 1), "ours_assembly_ms": round(1e3 * ours_a, 2),
            "loop_assembly_ms": round(1e3 * loop_a, 1),
            "assembly_speedup": round(loop_a / ours_a, 1),
        }  # fmt: skip
        figures[f"{num_people}_people"] = row
        print(
            f"{num_people:2d} people: ours {row['ours_ms']:.2f} ms, loop {row['loop_ms']:.1f} ms "
            f"({row['speedup']}x); assembly from peaks: ours {row['ours_assembly_ms']:.2f} ms, "
            f"loop {row['loop_assembly_ms']:.1f} ms ({row['assembly_speedup']}x)"
        )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
