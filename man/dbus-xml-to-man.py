#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes org.outpost.Outpost1(5), the bus API, from the interface XML.

    dbus-xml-to-man.py --version VERSION -o PAGE INTERFACE.xml...

Reads each file's interfaces, methods, signals, properties and their
gdbus-codegen style doc comments (the comment right before an element:
a "Name:" line, "@arg: text" lines, then paragraphs, with a little DocBook
markup: itemizedlist, variablelist, para, replaceable) and emits roff for
man(7). Only the Python standard library is used.
"""

import argparse
import re
import sys
import xml.etree.ElementTree as ET

BUS_NAME = "org.outpost.Outpost1"
ANNOTATION_CHANGED = "org.freedesktop.DBus.Property.EmitsChangedSignal"


def roff_text(text):
    """Escapes plain text for roff, inline (no line-start handling)."""
    text = text.replace("\\", "\\e")
    text = text.replace("-", "\\-")
    return text


def inline(text):
    """Plain text with gdbus-codegen references made bold or italic."""
    out = []
    pos = 0
    pattern = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)|#([A-Za-z0-9_.]+(?::[A-Za-z0-9_-]+)?)|%([A-Za-z_]+)")
    for m in pattern.finditer(text):
        out.append(roff_text(text[pos:m.start()]))
        if m.group(1):
            out.append("\\fI" + roff_text(m.group(1)) + "\\fR")
        elif m.group(2):
            name = m.group(2).rstrip(".")
            out.append("\\fB" + roff_text(name) + "\\fR" + roff_text(m.group(2)[len(name):]))
        else:
            out.append("\\fB" + roff_text(m.group(3)) + "\\fR")
        pos = m.end()
    out.append(roff_text(text[pos:]))
    return "".join(out)


def fill(text):
    """Roff lines for running text: one sentence-ish line each, safe starts."""
    text = " ".join(text.split())
    if not text:
        return []
    lines = []
    for line in re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.;:]) (?=[A-Z])", text):
        line = inline(line)
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return lines


def markup_to_text(element):
    """The text of a DocBook fragment, with <replaceable> as @name-like italics."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == "replaceable":
            parts.append("\x01" + (child.text or "") + "\x02")
        else:
            parts.append(markup_to_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def render_inline_markup(text):
    lines = fill(text)
    return [l.replace("\x01", "\\fI").replace("\x02", "\\fR") for l in lines]


def render_block(element):
    """Roff for one DocBook block element or a bare paragraph."""
    out = []
    if element.tag == "itemizedlist":
        for item in element.iter("listitem"):
            out.append(".IP \\(bu 2")
            out.extend(render_inline_markup(markup_to_text(item)))
        out.append(".PP")
    elif element.tag == "variablelist":
        for entry in element.iter("varlistentry"):
            term = entry.find("term")
            item = entry.find("listitem")
            out.append(".TP")
            term_lines = render_inline_markup(markup_to_text(term) if term is not None else "")
            out.append("\\fB" + " ".join(term_lines) + "\\fR")
            out.extend(render_inline_markup(markup_to_text(item) if item is not None else ""))
        out.append(".PP")
    else:
        out.append(".PP")
        out.extend(render_inline_markup(markup_to_text(element)))
    return out


def render_paragraphs(paragraphs):
    """Roff for the body of a doc comment: paragraphs of text and DocBook."""
    out = []
    for para in paragraphs:
        try:
            fragment = ET.fromstring("<doc>" + para + "</doc>")
        except ET.ParseError:
            fragment = _para(re.sub(r"<[^>]+>", "", para))
        blocks = [c for c in fragment if c.tag in ("itemizedlist", "variablelist")]
        if not blocks:
            out.extend(render_block(_wrap(fragment)))
            continue
        # Text around block elements becomes paragraphs of its own.
        if fragment.text and fragment.text.strip():
            out.extend(render_block(_para(fragment.text)))
        for child in fragment:
            out.extend(render_block(child) if child in blocks else render_block(_para(markup_to_text(child))))
            if child.tail and child.tail.strip():
                out.extend(render_block(_para(child.tail)))
    return out


def _para(text):
    p = ET.Element("para")
    p.text = text
    return p


def _wrap(fragment):
    p = ET.Element("para")
    p.text = fragment.text
    for child in fragment:
        p.append(child)
    return p


class Doc:
    """A parsed doc comment: its name, @parameters and paragraphs."""

    def __init__(self, comment):
        self.name = None
        self.params = {}
        self.paragraphs = []
        lines = [l.strip() for l in comment.strip("\n").splitlines()]
        while lines and not lines[0]:
            lines.pop(0)
        if lines and re.match(r"^[A-Za-z0-9_.]+:$", lines[0]):
            self.name = lines.pop(0)[:-1]
        current = None
        while lines and lines[0]:
            m = re.match(r"^@([A-Za-z_][A-Za-z0-9_]*):\s*(.*)$", lines[0])
            if m:
                current = m.group(1)
                self.params[current] = m.group(2)
            elif current:
                self.params[current] += " " + lines[0]
            lines.pop(0)
        block = []
        for line in lines + [""]:
            if line:
                block.append(line)
            elif block:
                self.paragraphs.append(" ".join(block))
                block = []


def docs_for(parent):
    """Maps each child element to the doc comment just before it."""
    result = {}
    pending = None
    for child in parent:
        if child.tag is ET.Comment:
            text = child.text or ""
            if "SPDX-License-Identifier" not in text:
                pending = Doc(text)
            continue
        result[child] = pending
        pending = None
    return result


def signature(element, with_direction):
    args = []
    for arg in element.findall("arg"):
        direction = arg.get("direction", "in" if element.tag == "method" else "out")
        prefix = direction + " " if with_direction else ""
        args.append("%s%s %s" % (prefix, arg.get("type"), arg.get("name", "")))
    return ", ".join(a.strip() for a in args)


def render_args(element, doc):
    out = []
    for arg in element.findall("arg"):
        name = arg.get("name", "")
        direction = arg.get("direction", "in" if element.tag == "method" else "out")
        text = doc.params.get(name, "") if doc else ""
        out.append(".TP")
        if element.tag == "method":
            out.append("\\fI%s\\fR (%s, %s)" % (roff_text(name), roff_text(arg.get("type")), direction))
        else:
            out.append("\\fI%s\\fR (%s)" % (roff_text(name), roff_text(arg.get("type"))))
        out.extend(fill(text) or ["\\&"])
    return out


def render_interface(iface, doc, members_doc):
    name = iface.get("name")
    out = ['.SH "%s"' % roff_text(name).upper().replace("\\-", "-")]
    if doc and doc.params.get("short_description"):
        out.append(".PP")
        out.extend(fill(doc.params["short_description"] + "."))
    if doc:
        out.extend(render_paragraphs(doc.paragraphs))

    kinds = (("method", "Methods"), ("signal", "Signals"), ("property", "Properties"))
    for tag, title in kinds:
        members = iface.findall(tag)
        if not members:
            continue
        out.append('.SS "%s"' % title)
        for m in members:
            mdoc = members_doc.get(m)
            mname = m.get("name")
            if tag == "property":
                annotations = {a.get("name"): a.get("value") for a in m.findall("annotation")}
                changed = annotations.get(ANNOTATION_CHANGED, "true")
                note = {"true": "emits change",
                        "const": "constant",
                        "false": "no change signal",
                        "invalidates": "invalidates"}.get(changed, changed)
                access = {"read": "read-only", "readwrite": "read-write", "write": "write-only"}.get(m.get("access"), m.get("access"))
                out.append(".TP")
                out.append("\\fB%s\\fR \\fI%s\\fR (%s, %s)" % (roff_text(mname), roff_text(m.get("type")),
                                                            roff_text(access), roff_text(note)))
                if mdoc:
                    body = render_paragraphs(mdoc.paragraphs)
                    # Paragraph breaks inside a .TP body become indented ones.
                    out.extend([".IP" if l == ".PP" else l for l in body[1:]] if body and body[0] == ".PP" else body)
                else:
                    out.append("\\&")
                continue
            out.append(".PP")
            out.append("\\fB%s\\fR(%s)" % (roff_text(mname), roff_text(signature(m, tag == "method"))))
            out.append(".RS 4")
            if mdoc:
                out.extend(render_paragraphs(mdoc.paragraphs))
            if m.findall("arg"):
                out.extend(render_args(m, mdoc))
            out.append(".RE")
    return out


HEADER = r""".\" SPDX-License-Identifier: LGPL-2.1-or-later
.\" Generated by man/dbus-xml-to-man.py from dbus-interfaces/*.xml: do not edit.
.TH ORG.OUTPOST.OUTPOST1 5 "" "outpost {version}" "File Formats"
.ad l
.nh
.SH NAME
org.outpost.Outpost1 \- the D\-Bus interfaces of the Outpost service
.SH SYNOPSIS
.nf
Bus name:   \fBorg.outpost.Outpost1\fR (system bus)
Objects:    \fI/org/outpost/Outpost1\fR           org.outpost.Outpost1.Registry,
                                          org.freedesktop.DBus.ObjectManager
            \fI/org/outpost/Outpost1/users\fR     org.outpost.Outpost1.Users
            \fI/org/outpost/Outpost1/presence\fR  org.outpost.Outpost1.Presence
            \fI/org/outpost/Outpost1/presence/\fIID\fR
                                          org.outpost.Outpost1.OnlineUser (one per online user)
            \fI/org/outpost/Outpost1/messages\fR  org.outpost.Outpost1.Messages
            \fI/org/outpost/Outpost1/events\fR    org.outpost.Outpost1.Events
            \fI/org/outpost/Outpost1/bridge\fR    org.outpost.Outpost1.Bridge (bridged buses only)
Errors:     org.outpost.Outpost1.Error.\fINAME\fR
.PP
Bus name:   \fBorg.outpost.Outpost1.Listener\fR (where outpost\-bridge listens;
            root and outpost\-bridge only)
Objects:    \fI/org/outpost/Outpost1/listener\fR
                                          org.outpost.Outpost1.Listener
.fi
.SH DESCRIPTION
.BR outpostd (8)
publishes these interfaces under the well\-known name
.BR org.outpost.Outpost1 ,
and
.BR outpost\-bridge (8)
publishes the same interfaces on the buses it relays the service to,
plus \fBorg.outpost.Outpost1.Bridge\fR.
Where it listens for remote bridges, it also answers
\fBorg.outpost.Outpost1.Listener\fR under a name of its own, for
administrators (\fBoutpostctl bridge peers\fR).
Clients can use them directly (for example with
.BR busctl (1)
or
.BR gdbus (1)),
through the GLib client library liboutpost\-1, or through
.BR outpostctl (1).
.PP
Types are D\-Bus signatures.
Times are \fBx\fR, microseconds since the Unix epoch.
Every method is callable on its manager's object path only, and every
method that changes state is authorized through polkit.
.PP
The error names are
.BR org.outpost.Outpost1.Error.SaveConflict ,
.BR NotFound ,
.BR AlreadyExists ,
.BR InvalidArgument ,
.BR LimitExceeded ,
.BR Disconnected ,
.BR HistoryTruncated ,
.B HistoryReset
and
.B StoreFull
(the disk holding the store is full: a change fails, reads are still
served, and the change can be made once space is freed);
authorization failures are
.B org.freedesktop.DBus.Error.AccessDenied
and
.BR org.freedesktop.DBus.Error.InteractiveAuthorizationRequired .
.PP
The sections below are generated from the interface descriptions that
are installed in \fI{interfacesdir}\fR.
"""

FOOTER = r""".SH EXAMPLES
.RS
.nf
busctl tree org.outpost.Outpost1
busctl introspect org.outpost.Outpost1 /org/outpost/Outpost1/users
busctl call org.outpost.Outpost1 /org/outpost/Outpost1/users \e
    org.outpost.Outpost1.Users CreateUser 'a{sv}' 1 name s ann
busctl get\-property org.outpost.Outpost1 /org/outpost/Outpost1/presence \e
    org.outpost.Outpost1.Presence OnlineCount Generation
busctl call org.outpost.Outpost1 /org/outpost/Outpost1 \e
    org.freedesktop.DBus.ObjectManager GetManagedObjects
.fi
.RE
.SH "SEE ALSO"
.BR outpostctl (1),
.BR outpostd (8),
.BR outpost\-bridge (8),
.BR busctl (1),
.BR gdbus (1)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="")
    parser.add_argument("--interfacesdir", default="/usr/share/dbus-1/interfaces")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    out = HEADER.replace("{version}", args.version).replace("{interfacesdir}", roff_text(args.interfacesdir).replace("/", "/\\:")).splitlines()
    for path in args.files:
        tree = ET.parse(path, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
        node = tree.getroot()
        iface_docs = docs_for(node)
        for iface in node.findall("interface"):
            out.extend(render_interface(iface, iface_docs.get(iface), docs_for(iface)))
    out.extend(FOOTER.splitlines())

    # No empty lines (man --warnings flags them), no doubled paragraph macros.
    cleaned = []
    for line in out:
        if not line.strip():
            continue
        if line in (".PP", ".IP") and cleaned and cleaned[-1] in (".PP", ".IP"):
            continue
        if line in (".PP", ".IP") and cleaned and cleaned[-1].startswith((".SH", ".SS", ".RS")):
            continue
        cleaned.append(line)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(cleaned) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
