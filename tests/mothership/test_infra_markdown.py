"""The share page's Markdown (mothership/infra/markdown.py): math as escaped TeX by pandoc's dollar
rule, task lists as disabled labelled checkboxes, tables in a scrolling region, all through nh3."""

from __future__ import annotations

import pytest

from mothership.infra.markdown import _cleaner, render_markdown


def test_inline_and_display_math_are_their_tex_escaped_in_a_math_span():
    # Given inline math, inline $$ and a display block, each with a "<" in its TeX
    html = render_markdown("Area $\\pi r^2 < a$ and $$e^{i\\pi}$$.\n\n$$\n\\frac{a}{b} < c\n$$\n")

    # Then each is its TeX, escaped (never markup), in the class the page styles
    assert '<span class="math">$\\pi r^2 &lt; a$</span>' in html
    assert '<span class="math math-display">$$e^{i\\pi}$$</span>' in html
    assert '<div class="math math-display">$$\n\\frac{a}{b} &lt; c\n$$</div>' in html


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10.",  # a space before the closing dollar
        "From $ x$ to y.",  # a space after the opening dollar
        "Pay $x$5 now.",  # a digit just after the closing dollar
        "Total 5$x$ then.",  # a digit just before the opening dollar
        "An escaped \\$x$ stays text.",
    ],
)
def test_dollar_amounts_and_spaced_dollars_stay_text(text):
    html = render_markdown(text)

    assert 'class="math' not in html, html
    assert "$" in html


def test_pandocs_rule_reads_dollars_with_nothing_spaced_inside_as_math():
    # No space just inside either dollar and no digit just outside: math, even with digits inside
    assert '<span class="math">$5 and 10$</span>' in render_markdown("Between $5 and 10$ there is nothing.")


def test_an_unclosed_display_block_is_text():
    html = render_markdown("$$\n\\frac{a}{b}\n\nafter")

    assert "math" not in html
    assert "<p>$$\n\\frac{a}{b}</p>" in html


def test_math_cannot_carry_markup():
    html = render_markdown('$</span><script>alert(1)</script><img src=x onerror="y">$')

    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_a_task_list_is_disabled_checkboxes_labelled_by_their_items():
    html = render_markdown("- [ ] write the draft\n- [x] pick a title\n- plain item\n")

    assert '<ul class="contains-task-list">' in html
    assert (
        '<li class="task-list-item"><label><input class="task-list-item-checkbox" type="checkbox" disabled="disabled">'
        " write the draft</label></li>"
    ) in html
    assert (
        '<input class="task-list-item-checkbox" checked="checked" type="checkbox" disabled="disabled"> pick a title</label>'
    ) in html
    assert "<li>plain item</li>" in html
    assert html.count("<input") == 2


def test_the_sanitizer_keeps_an_input_a_disabled_checkbox_or_nothing_whatever_it_is_given():
    # Markdown writes no other input (raw HTML is off); the sanitizer holds this on its own too
    html = _cleaner().clean('<input type="text" value="x" onfocus="y" checked="yes" class="other">')

    assert html == '<input class="" disabled="disabled">'


def test_a_table_scrolls_in_a_labelled_focusable_region():
    html = render_markdown("| a | b |\n|---|--:|\n| 1 | 2 |\n")

    assert html.startswith('<div class="table-scroll" tabindex="0" role="group" aria-label="Table"><table>')
    assert html.rstrip().endswith("</table>\n</div>")
    assert '<td class="md-align-right">2</td>' in html


def test_the_scroll_region_attributes_are_kept_only_with_their_own_values():
    html = _cleaner().clean('<div class="table-scroll evil" tabindex="-1" role="button" aria-label="Click">x</div>')

    assert html == '<div class="table-scroll">x</div>'


def test_a_code_block_is_a_labelled_region_the_keyboard_can_reach():
    html = render_markdown('```python extra\nx = 1\n```\n\n    indented\n\n```"><b>\ny\n```\n')

    assert '<pre tabindex="0" role="group" aria-label="Code: python"><code>x = 1' in html
    assert '<pre tabindex="0" role="group" aria-label="Code"><code>indented' in html
    assert '<pre tabindex="0" role="group" aria-label="Code: &quot;&gt;&lt;b&gt;"><code>y' in html


def test_a_pre_keeps_only_its_own_focus_and_role_values():
    html = _cleaner().clean('<pre tabindex="-1" role="button" aria-label="Code: x" onclick="y">z</pre>')

    assert html == '<pre aria-label="Code: x">z</pre>'
