#!/usr/bin/env python3
"""Crafts tampered SAML responses for Gatehouse's negative SAML tests.

    craft.py MODE --dir DIR [--xml] < in.b64 > out.b64

Reads a base64 SAMLResponse as captured from a real login at the SimpleSAMLphp IdP that
tests/peers/saml/start.sh runs in DIR, and writes the modified response, base64 (one line), or
the XML itself with --xml. Python 3 standard library only; signing is done by the xmlsec1 CLI
with the IdP's own key (DIR/cert/idp.key + idp.crt) unless the mode says otherwise.

Edits are textual on the XML the IdP produced, so everything not named below stays byte for
byte as the IdP wrote it. "Re-signed" means: all signatures are removed, the change is made, and
each element that was signed before (the Assertion by default; also the Response when the IdP
was started with --sign-response; only the Response with --sign-response-only) gets a fresh
enveloped signature (exc-c14n, the original signature and digest algorithms, the signer's
certificate in KeyInfo), Assertion first, so the signatures are valid: only the changed
content is wrong.

Modes:
  unsigned               every ds:Signature removed (Response and Assertion); nothing else changed
  other_key              re-signed with a fresh RSA key + self-signed certificate that is not in
                         the IdP's metadata (DIR/cert/other.key, other.crt; made once per DIR)
  modified_after_signing the NameID's text replaced by "admin"; old signature(s) kept (now invalid)
  second_assertion       a second, unsigned Assertion (copy of the signed one with a new ID,
                         NameID and uid "admin") inserted before the signed one, which is kept
                         with its valid signature (signature wrapping)
  comment_in_nameid      NameID "alice" becomes "alice<!---->.evil", re-signed: the signature is
                         valid over the canonical form (comments excluded), i.e. over "alice.evil"
  wrong_audience         Audience = http://127.0.0.1:1/not-this-sp, re-signed
  expired                Conditions NotBefore = now-2h, NotOnOrAfter and SubjectConfirmationData
                         NotOnOrAfter = now-1h (and IssueInstants now-2h), re-signed
  wrong_in_response_to   InResponseTo (Response and SubjectConfirmationData) = _not-the-request-id,
                         re-signed
  wrong_destination      Response Destination = http://127.0.0.1:1/not-the-acs, re-signed
  wrong_recipient        SubjectConfirmationData Recipient = http://127.0.0.1:1/not-the-acs,
                         re-signed
  wrong_issuer           every Issuer = http://127.0.0.1:1/not-the-idp, re-signed
  sha1_digest            re-signed with RSA-SHA256 over SHA-1 reference digests (nothing else
                         changed)

Signature wrapping that keeps exactly one Assertion in the document (so an "exactly one
assertion" rule cannot be what refuses it): the IdP's key signs a Response that holds no
assertion — what an IdP sends for a failed sign-in: the IdP's own Response, its Assertion
removed, ID _signed-shell, Status Responder/AuthnFailed — and that signed element is hidden
in a wrapper Response that looks like the genuine one (same Issuer, Destination,
InResponseTo, Status Success) and carries the IdP's Assertion unsigned with NameID and uid
"admin". Every signature in the document verifies with the IdP's certificate; an SP that
checks "a valid IdP signature is present" and then reads the document's Assertion signs in
"admin", one that reads only what was signed sees the failed, assertion-less Response.
  wrapped_in_extensions  the signed Response inside the wrapper's samlp:Extensions
  wrapped_in_object      the signed Response inside a ds:Object of the wrapper's own
                         ds:Signature (an enveloping signature over it, where the
                         Response's signature belongs)
  wrapped_id_reuse       as wrapped_in_extensions, the wrapper carrying the signed
                         Response's ID (_signed-shell) too

Encrypted responses (IdP started with --encrypt-assertion: an EncryptedAssertion) are refused
(exit 2): crafting applies to unencrypted responses only.
"""

import argparse
import base64
import datetime
import os
import re
import subprocess
import sys
import tempfile

MODES = [
    "unsigned",
    "other_key",
    "modified_after_signing",
    "second_assertion",
    "comment_in_nameid",
    "wrong_audience",
    "expired",
    "wrong_in_response_to",
    "wrong_destination",
    "wrong_recipient",
    "wrong_issuer",
    "sha1_digest",
    "wrapped_in_extensions",
    "wrapped_in_object",
    "wrapped_id_reuse",
]

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"

EVIL_AUDIENCE = "http://127.0.0.1:1/not-this-sp"
EVIL_URL = "http://127.0.0.1:1/not-the-acs"
EVIL_ISSUER = "http://127.0.0.1:1/not-the-idp"
EVIL_IN_RESPONSE_TO = "_not-the-request-id"


class CraftError(Exception):
    pass


def die(msg, code=1):
    sys.stderr.write(f"craft.py: {msg}\n")
    sys.exit(code)


# ---- locating elements (prefix-agnostic regexes over the IdP's own output) ----------------

SIG_RE = re.compile(r"<(?P<p>[A-Za-z_][\w.-]*:)?Signature[\s>].*?</(?P=p)?Signature>", re.S)


def element_span(xml, local, start=0):
    """(start, end) of the first element with this local name at or after `start`."""
    m = re.compile(r"<(?P<p>[A-Za-z_][\w.-]*:)?" + local + r"[\s/>]").search(xml, start)
    if not m:
        return None
    prefix = m.group("p") or ""
    # Self-closing?
    gt = xml.index(">", m.start())
    if xml[gt - 1] == "/":
        return (m.start(), gt + 1)
    close = f"</{prefix}{local}>"
    end = xml.find(close, gt)
    if end < 0:
        raise CraftError(f"no {close} for the <{prefix}{local}> at {m.start()}")
    return (m.start(), end + len(close))


def assertion_span(xml):
    span = element_span(xml, "Assertion")
    if span is None:
        raise CraftError("no Assertion in the response")
    return span


def signatures(xml):
    """[(start, end, signed_element)] where signed_element is 'assertion' or 'response'."""
    a0, a1 = assertion_span(xml)
    out = []
    for m in SIG_RE.finditer(xml):
        inside = a0 <= m.start() < a1
        out.append((m.start(), m.end(), "assertion" if inside else "response"))
    return out


def strip_signatures(xml):
    return SIG_RE.sub("", xml)


def algorithms(xml):
    """(SignatureMethod, DigestMethod) of the first signature, defaulting to RSA-SHA256/SHA-256."""
    sm = re.search(r"SignatureMethod\s+Algorithm=\"([^\"]+)\"", xml)
    dm = re.search(r"DigestMethod\s+Algorithm=\"([^\"]+)\"", xml)
    return (sm.group(1) if sm else RSA_SHA256, dm.group(1) if dm else SHA256)


def element_id(xml, span):
    tag_end = xml.index(">", span[0])
    m = re.search(r"\sID=\"([^\"]+)\"", xml[span[0]:tag_end])
    if not m:
        raise CraftError("element without an ID attribute")
    return m.group(1)


def after_issuer(xml, span):
    """Index right after the element's own <Issuer> (where a Signature belongs)."""
    iss = element_span(xml, "Issuer", span[0])
    if iss is None or iss[0] > span[1]:
        raise CraftError("element without an Issuer")
    return iss[1]


def template(ref_id, sig_alg, digest_alg):
    return (
        f'<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
        f'<ds:SignatureMethod Algorithm="{sig_alg}"/>'
        f'<ds:Reference URI="#{ref_id}"><ds:Transforms>'
        f'<ds:Transform Algorithm="{ENVELOPED}"/><ds:Transform Algorithm="{EXC_C14N}"/>'
        f'</ds:Transforms><ds:DigestMethod Algorithm="{digest_alg}"/><ds:DigestValue></ds:DigestValue>'
        f"</ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue>"
        f"<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"
    )


# ---- signing with xmlsec1 ---------------------------------------------------------------------

def xmlsec_sign(xml, key, cert, which):
    """Signs the (single) empty signature template of `which` ('assertion' or 'response')."""
    if which == "assertion":
        xpath = "//*[local-name()='Assertion']/*[local-name()='Signature']"
    else:
        xpath = "/*[local-name()='Response']/*[local-name()='Signature']"
    with tempfile.TemporaryDirectory(prefix="gatehouse-craft-") as tmp:
        src = os.path.join(tmp, "in.xml")
        dst = os.path.join(tmp, "out.xml")
        with open(src, "w", encoding="utf-8") as f:
            f.write(xml)
        cmd = [
            "xmlsec1", "--sign",
            "--privkey-pem", f"{key},{cert}",
            "--id-attr:ID", f"{ASSERTION_NS}:Assertion",
            "--id-attr:ID", f"{PROTOCOL_NS}:Response",
            "--node-xpath", xpath,
            "--output", dst, src,
        ]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise CraftError("xmlsec1 not found: run tests/peers/saml.sh")
        if r.returncode != 0:
            raise CraftError(f"xmlsec1 --sign ({which}) failed: {r.stderr.strip()}")
        with open(dst, encoding="utf-8") as f:
            out = f.read()
    # xmlsec1 writes an XML declaration the IdP did not; drop it.
    return re.sub(r"^<\?xml[^>]*\?>\s*", "", out)


def resign(xml, signed, key, cert, sig_alg, digest_alg):
    """Adds templates for the elements in `signed` to an unsigned document and signs them
    (Assertion first, so a Response signature covers the signed Assertion)."""
    if "assertion" in signed:
        span = assertion_span(xml)
        at = after_issuer(xml, span)
        xml = xml[:at] + template(element_id(xml, span), sig_alg, digest_alg) + xml[at:]
        xml = xmlsec_sign(xml, key, cert, "assertion")
    if "response" in signed:
        span = element_span(xml, "Response")
        if span is None:
            raise CraftError("no Response element")
        at = after_issuer(xml, span)
        xml = xml[:at] + template(element_id(xml, span), sig_alg, digest_alg) + xml[at:]
        xml = xmlsec_sign(xml, key, cert, "response")
    return xml


def other_key(dir_):
    """A second RSA key + self-signed certificate, made once per DIR, never in IdP metadata."""
    key = os.path.join(dir_, "cert", "other.key")
    crt = os.path.join(dir_, "cert", "other.crt")
    if not (os.path.exists(key) and os.path.exists(crt)):
        os.makedirs(os.path.dirname(key), exist_ok=True)
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
             "-keyout", key + ".tmp", "-out", crt + ".tmp",
             "-subj", "/O=Somebody else/CN=Not the Gatehouse test IdP"],
            capture_output=True, text=True)
        if r.returncode != 0:
            raise CraftError(f"openssl req failed: {r.stderr.strip()}")
        os.replace(key + ".tmp", key)
        os.replace(crt + ".tmp", crt)
    return key, crt


# ---- edits --------------------------------------------------------------------------------------

def sub_in(xml, span, pattern, repl, what, count=0):
    part = xml[span[0]:span[1]]
    new, n = re.subn(pattern, repl, part, count=count, flags=re.S)
    if n == 0:
        raise CraftError(f"nothing to change: no {what}")
    return xml[:span[0]] + new + xml[span[1]:]


NAMEID_RE = r"(<(?:[A-Za-z_][\w.-]*:)?NameID\b[^>]*>)([^<]*)(</(?:[A-Za-z_][\w.-]*:)?NameID>)"


def set_nameid(xml, span, value):
    return sub_in(xml, span, NAMEID_RE, lambda m: m.group(1) + value + m.group(3), "NameID", 1)


def set_attr(xml, span, elem_local, attr, value, what):
    pat = r"(<(?:[A-Za-z_][\w.-]*:)?" + elem_local + r"\b[^>]*?\s" + attr + r"=\")[^\"]*(\")"
    return sub_in(xml, span, pat, lambda m: m.group(1) + value + m.group(2), what)


def ts(delta):
    t = datetime.datetime.now(datetime.timezone.utc) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


SHELL_ID = "_signed-shell"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"


def evil_assertion(assertion):
    """The assertion, unsigned, naming "admin" (NameID and the uid attribute)."""
    evil = strip_signatures(assertion)
    evil = set_nameid(evil, (0, len(evil)), "admin")
    return re.sub(
        r"(<(?:[A-Za-z_][\w.-]*:)?Attribute\b[^>]*\sName=\"uid\"[^>]*>\s*<(?:[A-Za-z_][\w.-]*:)?AttributeValue\b[^>]*>)[^<]*",
        r"\g<1>admin", evil, count=1)


def root_span(xml):
    """(start, end) of the root Response's start tag."""
    resp = element_span(xml, "Response")
    if resp is None:
        raise CraftError("no Response element")
    return (resp[0], xml.index(">", resp[0]) + 1)


def set_root_id(xml, new_id):
    return set_attr(xml, root_span(xml), "Response", "ID", new_id, "Response ID")


def protocol_prefix(xml):
    m = re.match(r"<([A-Za-z_][\w.-]*:)?Response[\s>]", xml[root_span(xml)[0]:])
    return m.group(1) or ""


def failed_shell(body):
    """The (unsigned) Response without its Assertion, ID SHELL_ID, Status Responder/AuthnFailed."""
    a0, a1 = assertion_span(body)
    shell = set_root_id(body[:a0] + body[a1:], SHELL_ID)
    p = protocol_prefix(shell)
    shell, n = re.subn(
        r"<" + re.escape(p) + r"StatusCode\s+Value=\"" + re.escape(STATUS_SUCCESS) + r"\"\s*/>",
        f'<{p}StatusCode Value="{STATUS_RESPONDER}"><{p}StatusCode Value="{STATUS_AUTHN_FAILED}"/></{p}StatusCode>',
        shell, count=1)
    if n != 1:
        raise CraftError("no Success StatusCode to replace")
    return shell


def enveloping_template(ref_id, sig_alg, digest_alg, content):
    """A Signature over the element with ID `ref_id`, carried in its own ds:Object."""
    return (
        f'<ds:Signature xmlns:ds="{DSIG}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>'
        f'<ds:SignatureMethod Algorithm="{sig_alg}"/>'
        f'<ds:Reference URI="#{ref_id}"><ds:Transforms>'
        f'<ds:Transform Algorithm="{EXC_C14N}"/>'
        f'</ds:Transforms><ds:DigestMethod Algorithm="{digest_alg}"/><ds:DigestValue></ds:DigestValue>'
        f"</ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue>"
        f"<ds:KeyInfo><ds:X509Data/></ds:KeyInfo><ds:Object>{content}</ds:Object></ds:Signature>"
    )


def wrap(mode, body, key, crt, sig_alg, digest_alg):
    """Signature wrapping that keeps one Assertion (see the module doc)."""
    a0, a1 = assertion_span(body)
    wrapper = body[:a0] + evil_assertion(body[a0:a1]) + body[a1:]
    shell = failed_shell(body)
    p = protocol_prefix(wrapper)
    at = after_issuer(wrapper, element_span(wrapper, "Response"))
    if mode == "wrapped_in_object":
        sig = enveloping_template(SHELL_ID, sig_alg, digest_alg, shell)
        return xmlsec_sign(wrapper[:at] + sig + wrapper[at:], key, crt, "response")
    signed_shell = resign(shell, {"response"}, key, crt, sig_alg, digest_alg)
    if mode == "wrapped_id_reuse":
        wrapper = set_root_id(wrapper, SHELL_ID)
        at = after_issuer(wrapper, element_span(wrapper, "Response"))
    return wrapper[:at] + f"<{p}Extensions>{signed_shell}</{p}Extensions>" + wrapper[at:]


def craft(mode, xml, dir_):
    if re.search(r"<(?:[A-Za-z_][\w.-]*:)?EncryptedAssertion[\s>]", xml):
        raise CraftError("the response carries an EncryptedAssertion: crafting applies to "
                         "unencrypted responses only (start the IdP without --encrypt-assertion)")
    sigs = signatures(xml)
    signed = {s[2] for s in sigs}
    idp_key = os.path.join(dir_, "cert", "idp.key")
    idp_crt = os.path.join(dir_, "cert", "idp.crt")
    for f in (idp_key, idp_crt):
        if not os.path.exists(f):
            raise CraftError(f"{f} missing: is {dir_} a tests/peers/saml/start.sh DIR?")
    sig_alg, digest_alg = algorithms(xml)

    if mode == "unsigned":
        if not sigs:
            raise CraftError("the response is not signed at all")
        return strip_signatures(xml)

    if mode == "modified_after_signing":
        if not sigs:
            raise CraftError("the response is not signed at all")
        return set_nameid(xml, assertion_span(xml), "admin")

    if mode == "second_assertion":
        a0, a1 = assertion_span(xml)
        evil = strip_signatures(xml[a0:a1])
        evil = re.sub(r"(\sID=\")[^\"]+(\")", r"\g<1>_evil-second-assertion\g<2>", evil, count=1)
        evil = set_nameid(evil, (0, len(evil)), "admin")
        # The uid attribute too, for SPs that take the user id from there.
        evil = re.sub(
            r"(<(?:[A-Za-z_][\w.-]*:)?Attribute\b[^>]*\sName=\"uid\"[^>]*>\s*<(?:[A-Za-z_][\w.-]*:)?AttributeValue\b[^>]*>)[^<]*",
            r"\g<1>admin", evil, count=1)
        return xml[:a0] + evil + xml[a0:]

    if not signed:
        raise CraftError("the response is not signed at all; nothing to re-sign")
    key, crt = (idp_key, idp_crt)
    body = strip_signatures(xml)
    span = assertion_span(body)

    if mode.startswith("wrapped_"):
        return wrap(mode, body, key, crt, sig_alg, digest_alg)
    if mode == "other_key":
        key, crt = other_key(dir_)
    elif mode == "sha1_digest":
        sig_alg, digest_alg = RSA_SHA256, SHA1
    elif mode == "comment_in_nameid":
        body = sub_in(body, span, NAMEID_RE, lambda m: m.group(1) + m.group(2) + "<!---->.evil" + m.group(3),
                      "NameID", 1)
    elif mode == "wrong_audience":
        body = sub_in(body, span, r"(<(?:[A-Za-z_][\w.-]*:)?Audience>)[^<]*", r"\g<1>" + EVIL_AUDIENCE,
                      "Audience")
    elif mode == "expired":
        past2, past1 = ts(datetime.timedelta(hours=-2)), ts(datetime.timedelta(hours=-1))
        body = set_attr(body, span, "Conditions", "NotBefore", past2, "Conditions NotBefore")
        span = assertion_span(body)
        body = set_attr(body, span, "Conditions", "NotOnOrAfter", past1, "Conditions NotOnOrAfter")
        span = assertion_span(body)
        body = set_attr(body, span, "SubjectConfirmationData", "NotOnOrAfter", past1,
                        "SubjectConfirmationData NotOnOrAfter")
        body = re.sub(r"(\sIssueInstant=\")[^\"]*(\")", r"\g<1>" + past2 + r"\g<2>", body)
        body = re.sub(r"(\sAuthnInstant=\")[^\"]*(\")", r"\g<1>" + past2 + r"\g<2>", body)
    elif mode == "wrong_in_response_to":
        n_before = len(re.findall(r"\sInResponseTo=\"", body))
        if n_before == 0:
            raise CraftError("no InResponseTo (an IdP-initiated response?)")
        body = re.sub(r"(\sInResponseTo=\")[^\"]*(\")", r"\g<1>" + EVIL_IN_RESPONSE_TO + r"\g<2>", body)
    elif mode == "wrong_destination":
        resp = element_span(body, "Response")
        tag_end = body.index(">", resp[0]) + 1
        body = set_attr(body, (resp[0], tag_end), "Response", "Destination", EVIL_URL, "Response Destination")
    elif mode == "wrong_recipient":
        body = set_attr(body, span, "SubjectConfirmationData", "Recipient", EVIL_URL,
                        "SubjectConfirmationData Recipient")
    elif mode == "wrong_issuer":
        body, n = re.subn(r"(<(?:[A-Za-z_][\w.-]*:)?Issuer\b[^>]*>)[^<]*", r"\g<1>" + EVIL_ISSUER, body)
        if n == 0:
            raise CraftError("no Issuer")
    else:
        raise CraftError(f"unknown mode {mode}")
    return resign(body, signed, key, crt, sig_alg, digest_alg)


def main():
    ap = argparse.ArgumentParser(
        description="Crafts a tampered SAMLResponse (base64 on stdin) for negative tests.",
        epilog="Modes: " + ", ".join(MODES))
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--dir", required=True, help="the IdP's DIR (tests/peers/saml/start.sh)")
    ap.add_argument("--xml", action="store_true", help="write the XML instead of base64")
    args = ap.parse_args()
    raw = "".join(sys.stdin.read().split())
    if not raw:
        die("no base64 SAMLResponse on stdin", 2)
    try:
        xml = base64.b64decode(raw, validate=True).decode("utf-8")
    except Exception as e:  # noqa: BLE001 - any decoding failure is the same user error
        die(f"stdin is not a base64 UTF-8 SAMLResponse: {e}", 2)
    try:
        out = craft(args.mode, xml, args.dir)
    except CraftError as e:
        die(f"{args.mode}: {e}", 2)
    if args.xml:
        sys.stdout.write(out)
    else:
        sys.stdout.write(base64.b64encode(out.encode("utf-8")).decode("ascii") + "\n")


if __name__ == "__main__":
    main()
