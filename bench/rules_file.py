"""A generated replies file with N keyword rules (for "how cost grows"): the shipped file's other sections,
mostly exact keywords, and some contains/regex rules, as a big account's file would look."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEYWORD = "微博"


def generated_keywords(count: int) -> list[dict]:
    """`count` rules: the 微博 news card halfway down the exact keywords, the scanned (contains/regex) rules
    last, so that the 微博 hit comes from the exact-keyword dict and no scanned rule is tried before it."""
    shipped = yaml.safe_load((ROOT / "replies.yaml").read_text(encoding="utf-8"))
    weibo = next(rule for rule in shipped["keywords"] if rule.get("match") == KEYWORD)
    scanned_count = max(3, count * 3 // 1000)
    exact_count = count - scanned_count
    exact: list[dict] = []
    for number in range(exact_count - 1):
        if number % 10 == 0:  # a rule with several spellings
            exact.append({"match": [f"活动{number}", f"event{number}", f"ACT-{number}"],
                          "reply": f"活动 {number} 的详情见菜单「活动」。"})
        elif number % 10 == 1:
            exact.append({"match": f"课程{number:05d}", "reply": {"news": [{
                "title": f"课程 {number}", "description": "点开查看课程安排。",
                "picurl": "https://example.com/course.png", "url": f"https://example.com/course/{number}",
            }]}})
        else:
            exact.append({"match": f"优惠码{number}", "reply": f"你的优惠码是 CODE{number:06d}，{{openid}} 专属。"})
    exact.insert(len(exact) // 2, weibo)
    scanned: list[dict] = []
    for number in range(scanned_count):
        if number % 3 == 2:
            pattern = rf"^(订单|order)\s*#?{number}\d{{6}}$"
            scanned.append({"regex": pattern, "reply": "订单查询请在菜单「我的订单」中进行。"})
        else:
            scanned.append({"contains": f"投诉{number}号", "reply": "收到你的反馈，客服会在 24 小时内联系你。"})
    return exact + scanned


def write_replies_file(path: Path, keyword_rules: int) -> Path:
    """The shipped replies.yaml with its keywords replaced by `keyword_rules` generated rules."""
    document = yaml.safe_load((ROOT / "replies.yaml").read_text(encoding="utf-8"))
    document["keywords"] = generated_keywords(keyword_rules)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=200), encoding="utf-8")
    return path
