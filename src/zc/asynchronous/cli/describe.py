"""Describing jobs, queues and dispatchers as JSON-ready data."""
import json
import types

import ZODB.utils

from zc.asynchronous import interfaces, utils

_STATES = {
    interfaces.NEW: 'new', interfaces.PENDING: 'pending',
    interfaces.ASSIGNED: 'assigned', interfaces.ACTIVE: 'active',
    interfaces.CALLBACKS: 'callbacks', interfaces.COMPLETED: 'completed'}

#: The states each ``jobs`` option selects.
STATE_FILTERS = {
    'pending': {'pending'},
    'active': {'assigned', 'active', 'callbacks'},
    'completed': {'completed'},
    'failed': {'failed'},
}


def is_failure(value):
    return interfaces.IFailure.providedBy(value)


def job_state(job):
    """A short name for the job's status; ``failed``: completed, failed."""
    status = job.status
    if status == interfaces.COMPLETED and is_failure(job.result):
        return 'failed'
    return _STATES.get(status, str(status))


def oid_of(obj):
    return ZODB.utils.u64(obj._p_oid)


def describe_call(job):
    """The job's call as text: ``module.function(1, 'a')``."""
    try:
        func = job.callable
        owner = getattr(func, '__self__', None)
        if owner is None or isinstance(owner, types.ModuleType):
            name = utils.custom_repr(func)
        elif interfaces.IJob.providedBy(owner):
            name = 'job %d.%s' % (oid_of(owner), func.__name__)
        else:
            name = '%s.%s' % (utils.custom_repr(owner), func.__name__)
        arguments = [_describe_argument(a) for a in job.args]
        arguments += ['%s=%s' % (key, _describe_argument(value))
                      for key, value in job.kwargs.items()]
        return '%s(%s)' % (name, ', '.join(arguments))
    except Exception:
        return repr(job)


def _describe_argument(value):
    if interfaces.IJob.providedBy(value) and value._p_oid is not None:
        return 'job %d' % oid_of(value)
    return utils.custom_repr(value)


def describe_result(value):
    """A result as one line: its repr, or ``Type: message`` for a failure."""
    if is_failure(value):
        return '%s: %s' % (getattr(value.type, '__name__', value.type),
                           value.getErrorMessage())
    return utils.custom_repr(value)


def _iso(when):
    return None if when is None else when.isoformat()


def _json_value(value):
    """``value`` if JSON can carry it, else None (see ``result_repr``)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def job_summary(job, queue_name=None):
    """What ``jobs`` reports about a job, as a JSON-ready dict."""
    done = job.status == interfaces.COMPLETED
    result = job.result if done else None
    if queue_name is None:
        queue = job.queue
        queue_name = None if queue is None else queue.name
    return {
        'oid': oid_of(job),
        'state': job_state(job),
        'queue': queue_name,
        'call': describe_call(job),
        'begin_after': _iso(job.begin_after),
        'started': _iso(job.active_start),
        'ended': _iso(job.active_end),
        'completed': _iso(job.initial_callbacks_end) if done else None,
        'result': None if is_failure(result) else _json_value(result),
        'result_repr': describe_result(result) if done else None,
        'error': describe_result(result) if is_failure(result) else None,
    }


def job_details(job):
    """What ``job OID`` reports: the summary, and more."""
    details = job_summary(job)
    agent = job.agent
    parent = job.parent
    result = job.result if job.status == interfaces.COMPLETED else None
    details.update({
        'begin_by': (None if job.begin_by is None
                     else job.begin_by.total_seconds()),
        'assigner': None if job.assignerUUID is None else str(
            job.assignerUUID),
        'dispatcher': None if agent is None or agent.parent is None else str(
            agent.parent.UUID),
        'agent': None if agent is None else agent.name,
        'callback_of': (oid_of(parent) if interfaces.IJob.providedBy(parent)
                        else None),
        'callbacks': [job_summary(callback, details['queue'])
                      for callback in job.callbacks],
        'annotations': {str(key): utils.custom_repr(value)
                        for key, value in job.annotations.items()},
        'traceback': result.getTraceback() if is_failure(result) else None,
    })
    return details


def iter_jobs(conn):
    """Yield ``(queue name, job)`` for each job the queues know of.

    Pending jobs first (in the order they come out of the queue), then
    the jobs agents hold, then the recently completed ones, oldest first.
    """
    queues = conn.root().get(interfaces.KEY)
    if queues is None:
        return
    for name, queue in queues.items():
        agents = [agent for da in queue.dispatchers.values()
                  for agent in da.values()]
        for job in queue:
            yield name, job
        for agent in agents:
            for job in agent:
                yield name, job
        completed = [job for agent in agents for job in agent.completed]
        completed.sort(key=lambda job: job.key, reverse=True)
        for job in completed:
            yield name, job


def dispatcher_state(da):
    """``alive``, ``dead`` (no recent ping) or ``stopped`` (deactivated)."""
    if not da.activated:
        return 'stopped'
    return 'dead' if da.dead else 'alive'


def status_report(conn):
    """What ``status`` reports, as a JSON-ready dict."""
    queues = conn.root().get(interfaces.KEY)
    report = []
    for name, queue in (queues.items() if queues is not None else ()):
        counts = dict(pending=len(queue), assigned=0, active=0, completed=0,
                      failed=0)
        dispatchers = []
        for uuid, da in queue.dispatchers.items():
            agents = []
            for agent_name, agent in da.items():
                states = [job_state(job) for job in agent]
                done = [job_state(job) for job in agent.completed]
                for state in states + done:
                    state = 'active' if state == 'callbacks' else state
                    if state in counts:
                        counts[state] += 1
                agents.append({'name': agent_name, 'size': agent.size,
                               'jobs': len(states), 'completed': len(done),
                               'failed': done.count('failed')})
            dispatchers.append({
                'uuid': str(uuid), 'state': dispatcher_state(da),
                'activated': _iso(da.activated),
                'last_ping': _iso(da.last_ping.value), 'agents': agents})
        report.append({'name': name, 'jobs': counts,
                       'dispatchers': dispatchers})
    return {'queues': report}
