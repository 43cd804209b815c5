"""The default recipe distils: its TinyCLIP student has at most half the teacher's parameters, and
every build of a distilling recipe shows the teacher beside the student (parameters, held-out
zero-shot accuracy per kind with chance, retention)."""
from __future__ import annotations

from edgeclip.config import default_recipe
from edgeclip.models._build import assemble
from edgeclip.models.inherit import student_config
from edgeclip.verify.distill_summary import distill_md, teacher_student_rows


def _params(cfg, tokenizer=None) -> int:
    m = assemble(cfg, uri="builtin:test", seed=0, tokenizer=tokenizer)
    return sum(p.numel() for tower in (m.image, m.text) for p in tower.parameters())


def _teacher(r):
    """The default teacher as pretraining starts from it: with its own caption tokenizer
    (``pretrain.tokenizer``), so its text table has the trained vocabulary's rows, not CLIP's 49408."""
    from edgeclip.build.stages.teacher import untrained_teacher

    assert r.pretrain and r.pretrain.tokenizer
    return untrained_teacher(r)[0]


def test_default_recipe_distils_a_tinyclip_student_of_at_most_half_the_teacher():
    r = default_recipe()
    assert [s.method for s in r.distill] == ["tinyclip"]
    opts = r.distill[0].options
    assert opts["inherit"] == "manual"
    model = _teacher(r)
    teacher = model.config
    assert teacher["text"]["vocab_size"] < 49408 and teacher["tokenizer"]["kind"] == "hf"
    student = student_config(teacher, opts.get("image"), opts.get("text"))
    t, s = _params(teacher, model.tokenizer), _params(student, model.tokenizer)
    assert s <= 0.5 * t, (s, t)
    for key in ("layers", "width", "outline_widths"):   # a ViT's or a factored tower's depth and widths
        if key in teacher["image"]:
            assert student["image"][key] <= teacher["image"][key], key


def _summary(teacher_zs, student_zs):
    return [{"method": "tinyclip", "name": "student", "params": {
        "teacher": {"image": 800, "text": 7200}, "student": {"image": 200, "text": 3200}},
        "zero_shot": {"teacher": teacher_zs, "student": student_zs}}]


def test_teacher_student_rows_show_retention_per_kind_and_of_the_mean():
    rows = teacher_student_rows(_summary({"shape": 0.8, "colour": 1.0, "shape-colour": 0.6},
                                         {"shape": 0.4, "colour": 0.9, "shape-colour": 0.6}))
    by = {r[0]: r[1:] for r in rows[1:]}
    assert by["parameters (image + text)"] == ["8,000", "3,400", "0.42", ""]
    assert by["held-out shape top-1"] == ["80.0%", "40.0%", "0.50", "12.5%"]
    assert by["held-out shape-colour top-1"][3] == "1.6%"
    assert by["mean of those"] == ["80.0%", "63.3%", "0.79", ""]
    md = distill_md(_summary({"shape": 0.8, "colour": 1.0, "shape-colour": 0.6},
                             {"shape": 0.4, "colour": 0.9, "shape-colour": 0.6}))
    assert "## Teacher and student" in md and "| held-out shape top-1 | 80.0% | 40.0% | 0.50 | 12.5% |" in md


def test_no_teacher_student_rows_without_both_records():
    assert teacher_student_rows([]) == []
    assert teacher_student_rows([{"method": "mobileclip", "params": {}}]) == []
    half = _summary({"colour": 1.0}, {})
    assert teacher_student_rows(half) == []
