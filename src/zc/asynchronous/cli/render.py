"""Printing: JSON, and the text tables and lines of the commands."""
import datetime
import json


def print_json(data):
    print(json.dumps(data, indent=2))


def shorten(text, width):
    text = ' '.join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + '...'


def format_table(headers, rows):
    """Rows of cells as aligned text columns under ``headers``."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column)
              for column in zip(headers, *rows)]
    return '\n'.join(
        '  '.join(cell.ljust(width) for cell, width in zip(row, widths))
        .rstrip() for row in [list(headers)] + rows)


def _parse_iso(text):
    return None if text is None else datetime.datetime.fromisoformat(text)


def format_age(text, now=None):
    """An ISO time as a distance from now: ``4s ago``, ``in 2m``."""
    when = _parse_iso(text)
    if when is None:
        return 'never'
    now = now or datetime.datetime.now(datetime.timezone.utc)
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            amount = '%d%s' % (seconds // size, unit)
            break
    else:
        amount = '%ds' % seconds
    return 'in ' + amount if future else amount + ' ago'


def _queue_label(name):
    return "''" if name == '' else repr(name)


def render_status(report, spec):
    lines = ['database %s' % spec]
    if not report['queues']:
        lines.append("no queues yet ('zc-async put' or 'zc-async run' adds "
                     'the default one)')
    for queue in report['queues']:
        counts = ', '.join('%d %s' % (count, state)
                           for state, count in queue['jobs'].items())
        lines.append('queue %s: %s' % (_queue_label(queue['name']), counts))
        if not queue['dispatchers']:
            lines.append("  no dispatcher yet ('zc-async run' starts one)")
        for da in queue['dispatchers']:
            since = ('' if da['activated'] is None else
                     ', activated %s' % format_age(da['activated']))
            lines.append('  dispatcher %s: %s%s, last ping %s' % (
                da['uuid'], da['state'], since, format_age(da['last_ping'])))
            for agent in da['agents']:
                lines.append(
                    '    agent %r: %d of %d busy, %d completed, %d failed'
                    % (agent['name'], agent['jobs'], agent['size'],
                       agent['completed'], agent['failed']))
    return '\n'.join(lines)


def _job_note(summary):
    """The DETAIL column of ``jobs``: a result, an error, or a time."""
    state = summary['state']
    if state == 'completed':
        return summary['result_repr']
    if state == 'failed':
        return summary['error']
    if state in ('active', 'callbacks'):
        return 'started %s' % format_age(summary['started'])
    if summary['begin_after']:
        age = format_age(summary['begin_after'])
        return ('begins ' if age.startswith('in ') else 'due ') + age
    return ''


def render_jobs(summaries):
    if not summaries:
        return 'no jobs'
    with_queue = any(s['queue'] for s in summaries)
    headers = ['OID', 'STATE'] + (['QUEUE'] if with_queue else []) + [
        'CALL', 'DETAIL']
    rows = [[s['oid'], s['state']]
            + ([_queue_label(s['queue'])] if with_queue else [])
            + [shorten(s['call'], 50), shorten(_job_note(s), 60)]
            for s in summaries]
    return format_table(headers, rows)


def render_job(details):
    fields = [
        ('call', details['call']),
        ('queue', None if details['queue'] is None
         else _queue_label(details['queue'])),
        ('callback of', details['callback_of'] and 'job %d'
         % details['callback_of']),
        ('put by', details['assigner']),
        ('begin after', details['begin_after']),
        ('begin by', details['begin_by'] and '%gs after that'
         % details['begin_by']),
        ('agent', details['agent'] and '%r of dispatcher %s'
         % (details['agent'], details['dispatcher'])),
        ('started', details['started']),
        ('ended', details['ended']),
        ('completed', details['completed']),
        ('result', details['result_repr']),
    ]
    lines = ['job %d: %s' % (details['oid'], details['state'])]
    lines += ['  %-12s %s' % (label + ':', value)
              for label, value in fields if value is not None]
    for callback in details['callbacks']:
        lines.append('  %-12s job %d (%s) %s' % (
            'callback:', callback['oid'], callback['state'],
            shorten(callback['call'], 60)))
    for key, value in details['annotations'].items():
        lines.append('  %-12s %s = %s' % ('annotation:', key, value))
    if details['traceback']:
        lines.append(details['traceback'].rstrip())
    return '\n'.join(lines)
