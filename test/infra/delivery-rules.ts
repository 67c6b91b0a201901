/**
 * AWS's runtime delivery rules, checked on a synthesized CloudFormation template. cdk-nag and
 * cfn-lint see each resource on its own; these rules follow a message from its sender to its
 * receiver and ask whether AWS would let it through:
 *
 * - **Alarm -> SNS topic**: CloudWatch publishes as `cloudwatch.amazonaws.com`. A topic with a topic
 *   policy has only that policy (it replaces SNS's default one, which lets the owning account's
 *   services publish), so it needs an Allow of `sns:Publish` for that principal whose conditions
 *   (`aws:SourceAccount`, `aws:SourceArn`) hold for the alarm; no Deny may apply. An encrypted topic's
 *   key policy must let CloudWatch use the key (`kms:Decrypt`, `kms:GenerateDataKey*`), which an
 *   AWS-managed key (`alias/aws/sns`) never does.
 * - **Scheduler target and dead-letter queue**: EventBridge Scheduler assumes the schedule's execution
 *   role (its trust policy must admit `scheduler.amazonaws.com`) and uses that role both to invoke
 *   the target (`lambda:InvokeFunction`) and to send the undelivered event to the DLQ
 *   (`sqs:SendMessage`; see "Configuring a schedule's dead-letter queue" in the Scheduler guide). The
 *   queue's own policy needs no Allow (same account, identity policy suffices) but must not Deny.
 * - **Lambda destinations and dead-letter queues**: Lambda delivers with the function's execution
 *   role: `lambda:InvokeFunction`, `sqs:SendMessage` or `sns:Publish` on the destination.
 * - **SNS -> Lambda subscription**: SNS invokes through the function's resource policy, which needs an
 *   `AWS::Lambda::Permission` for `sns.amazonaws.com` whose `SourceArn` is the topic (or absent).
 *
 * Every service publishes over TLS, so a Deny on `aws:SecureTransport: false` does not apply.
 */

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON is untyped.
type Json = any;
type Resource = { Type: string; Properties?: Record<string, Json> };
type Statement = {
  Effect: 'Allow' | 'Deny';
  Principal?: Json;
  Action?: string | string[];
  Resource?: Json;
  Condition?: Record<string, Record<string, Json>>;
};

/** What was walked, so a test can assert the check was not vacuous. */
export interface DeliveryWalk {
  /** Alarms (metric and composite) whose actions were followed. */
  readonly alarms: number;
  /** Alarm actions (alarm, OK, insufficient data) followed to a topic. */
  readonly alarmActions: number;
  /** Schedules whose role, target and DLQ were checked. */
  readonly schedules: number;
  /** Schedules with a dead-letter queue. */
  readonly scheduleDeadLetterQueues: number;
  /** Lambda on-success/on-failure destinations and function dead-letter queues. */
  readonly functionDestinations: number;
  /** SNS subscriptions with the lambda protocol. */
  readonly lambdaSubscriptions: number;
}

/** The problems found (empty: every path delivers) and what was walked. */
export interface DeliveryReport {
  readonly problems: string[];
  readonly walked: DeliveryWalk;
}

/** A request as AWS evaluates it: who, what, on which resource, with which context keys. */
interface Request {
  readonly service?: string;
  readonly action: string;
  readonly resource: Json;
  readonly context: Readonly<Record<string, string>>;
}

/** Where the stack is deployed: literal values for a stack with an `env`, pseudo parameters otherwise. */
export interface DeliveryEnvironment {
  readonly account?: string;
  readonly region?: string;
}

/** Check every delivery path of `template` (the JSON of `Template.toJSON()` or a synthesized file). */
export function checkDelivery(
  template: { Resources?: Record<string, Resource> },
  env: DeliveryEnvironment = {},
): DeliveryReport {
  const resources = template.Resources ?? {};
  const ACCOUNT = env.account ?? pseudo('AWS::AccountId');
  const REGION = env.region ?? pseudo('AWS::Region');
  const problems: string[] = [];
  const walked = {
    alarms: 0,
    alarmActions: 0,
    schedules: 0,
    scheduleDeadLetterQueues: 0,
    functionDestinations: 0,
    lambdaSubscriptions: 0,
  };
  const ofType = (type: string) =>
    Object.entries(resources).filter(([, resource]) => resource.Type === type) as [string, Resource][];
  const idOf = (expr: Json): string | undefined => {
    const id = typeof expr?.Ref === 'string' ? expr.Ref : expr?.['Fn::GetAtt']?.[0];
    return typeof id === 'string' && id in resources ? id : undefined;
  };
  const typeOf = (id: string | undefined) => (id === undefined ? undefined : resources[id]?.Type);

  /** Statements of the identity policies attached to role `roleId` (managed policies are not visible). */
  const roleStatements = (roleId: string): Statement[] => {
    const attached = ofType('AWS::IAM::Policy')
      .filter(([, p]) => (p.Properties?.Roles ?? []).some((r: Json) => r?.Ref === roleId))
      .flatMap(([, p]) => statementsOf(p.Properties?.PolicyDocument));
    const inline = (resources[roleId]?.Properties?.Policies ?? []).flatMap((p: Json) =>
      statementsOf(p.PolicyDocument),
    );
    return [...attached, ...inline];
  };
  const roleOfFunction = (fnId: string) => idOf(resources[fnId]?.Properties?.Role);

  /** The identity role `roleId` may do `request`, and the target's resource policy does not deny it. */
  const roleMay = (roleId: string, request: Request, where: string) => {
    if (!decide(roleStatements(roleId), request, false)) {
      problems.push(
        `${where}: role ${roleId} has no Allow of ${request.action} on ${render(request.resource)}`,
      );
    }
    const denied = resourcePolicies(request.resource).some(
      (statements) => decide(statements, request, true) === 'denied',
    );
    if (denied)
      problems.push(`${where}: the resource policy of ${render(request.resource)} denies ${request.action}`);
  };

  /** Resource policies (topic or queue) of the resource `expr` points at. */
  const resourcePolicies = (expr: Json): Statement[][] => {
    const id = idOf(expr);
    if (id === undefined) return [];
    const type = typeOf(id);
    const [policyType, listKey] =
      type === 'AWS::SNS::Topic'
        ? ['AWS::SNS::TopicPolicy', 'Topics']
        : type === 'AWS::SQS::Queue'
          ? ['AWS::SQS::QueuePolicy', 'Queues']
          : [undefined, undefined];
    if (policyType === undefined) return [];
    return ofType(policyType)
      .filter(([, p]) => (p.Properties?.[listKey] ?? []).some((t: Json) => idOf(t) === id))
      .map(([, p]) => statementsOf(p.Properties?.PolicyDocument));
  };

  // Alarm -> topic (-> key).
  for (const [alarmId, alarm] of [
    ...ofType('AWS::CloudWatch::Alarm'),
    ...ofType('AWS::CloudWatch::CompositeAlarm'),
  ]) {
    walked.alarms++;
    const props = alarm.Properties ?? {};
    const alarmName = props.AlarmName;
    const alarmArn =
      typeof alarmName === 'string'
        ? `arn:\${AWS::Partition}:cloudwatch:${REGION}:${ACCOUNT}:alarm:${alarmName}`
        : `<${alarmId}: no AlarmName, ARN unknown>`;
    for (const key of ['AlarmActions', 'OKActions', 'InsufficientDataActions']) {
      for (const action of (props[key] ?? []) as Json[]) {
        const topicId = idOf(action);
        const where = `alarm ${alarmId} (${alarmName ?? 'unnamed'}) ${key}`;
        if (typeOf(topicId) !== 'AWS::SNS::Topic' || topicId === undefined) {
          problems.push(`${where}: action ${render(action)} is not an SNS topic of this template`);
          continue;
        }
        walked.alarmActions++;
        const request: Request = {
          service: 'cloudwatch.amazonaws.com',
          action: 'sns:Publish',
          resource: { Ref: topicId },
          context: {
            'aws:SourceAccount': ACCOUNT,
            'aws:SourceArn': alarmArn,
            'aws:SecureTransport': 'true',
          },
        };
        const policies = resourcePolicies(request.resource);
        // No topic policy: SNS's default policy lets the owning account's services publish.
        if (policies.length > 0) {
          const all = policies.flat();
          const decision = decide(all, request, true);
          if (decision !== 'allowed') {
            problems.push(
              `${where}: topic ${topicId}'s policy ${decision === 'denied' ? 'denies' : 'has no Allow of'} ` +
                `sns:Publish for cloudwatch.amazonaws.com from ${alarmArn}`,
            );
          }
        }
        const kmsKey = resources[topicId]?.Properties?.KmsMasterKeyId;
        if (kmsKey !== undefined)
          checkKeyFor(kmsKey, 'cloudwatch.amazonaws.com', `${where} -> topic ${topicId}`);
      }
    }
  }

  function checkKeyFor(keyExpr: Json, service: string, where: string): void {
    const keyId = idOf(keyExpr);
    if (typeof keyExpr === 'string' && keyExpr.includes('alias/aws/')) {
      problems.push(`${where}: encrypted with an AWS-managed key (${keyExpr}), which ${service} cannot use`);
      return;
    }
    if (keyId === undefined || typeOf(keyId) !== 'AWS::KMS::Key') {
      problems.push(
        `${where}: encrypted with a key outside this template (${render(keyExpr)}); cannot check its policy`,
      );
      return;
    }
    const statements = statementsOf(resources[keyId]?.Properties?.KeyPolicy);
    for (const action of ['kms:Decrypt', 'kms:GenerateDataKey']) {
      const request = { service, action, resource: '*', context: { 'aws:SourceAccount': ACCOUNT } };
      if (decide(statements, request, true) !== 'allowed') {
        problems.push(`${where}: key ${keyId}'s policy does not let ${service} ${action}`);
      }
    }
  }

  // Scheduler: the execution role assumes, invokes and writes the DLQ.
  for (const [scheduleId, schedule] of ofType('AWS::Scheduler::Schedule')) {
    walked.schedules++;
    const target = schedule.Properties?.Target ?? {};
    const where = `schedule ${scheduleId}`;
    const roleId = idOf(target.RoleArn);
    if (roleId === undefined || typeOf(roleId) !== 'AWS::IAM::Role') {
      problems.push(`${where}: execution role ${render(target.RoleArn)} is not a role of this template`);
      continue;
    }
    const trust = statementsOf(resources[roleId]?.Properties?.AssumeRolePolicyDocument);
    const assume = {
      service: 'scheduler.amazonaws.com',
      action: 'sts:AssumeRole',
      resource: '*',
      context: { 'aws:SourceAccount': ACCOUNT },
    };
    if (decide(trust, assume, true) !== 'allowed') {
      problems.push(`${where}: role ${roleId}'s trust policy does not let scheduler.amazonaws.com assume it`);
    }
    const targetType = typeOf(idOf(target.Arn));
    if (targetType === 'AWS::Lambda::Function') {
      roleMay(roleId, { action: 'lambda:InvokeFunction', resource: target.Arn, context: {} }, where);
    } else {
      problems.push(
        `${where}: target ${render(target.Arn)} is not a Lambda function of this template (not checked)`,
      );
    }
    const dlq = target.DeadLetterConfig?.Arn;
    if (dlq !== undefined) {
      walked.scheduleDeadLetterQueues++;
      checkSendTo(roleId, dlq, `${where} dead-letter queue`);
    }
  }

  /** `roleId` sends to a queue, topic or function (destination or DLQ), and any customer key lets it. */
  function checkSendTo(roleId: string, destination: Json, where: string): void {
    const id = idOf(destination);
    const type = typeOf(id);
    const action =
      type === 'AWS::SQS::Queue'
        ? 'sqs:SendMessage'
        : type === 'AWS::SNS::Topic'
          ? 'sns:Publish'
          : type === 'AWS::Lambda::Function'
            ? 'lambda:InvokeFunction'
            : undefined;
    if (action === undefined || id === undefined) {
      problems.push(`${where}: ${render(destination)} is not a queue, topic or function of this template`);
      return;
    }
    roleMay(roleId, { action, resource: destination, context: { 'aws:SecureTransport': 'true' } }, where);
    const key = resources[id]?.Properties?.KmsMasterKeyId;
    if (key !== undefined) {
      for (const kmsAction of ['kms:Decrypt', 'kms:GenerateDataKey']) {
        if (!decide(roleStatements(roleId), { action: kmsAction, resource: key, context: {} }, false)) {
          problems.push(
            `${where}: role ${roleId} may not ${kmsAction} on ${render(key)}, which encrypts ${id}`,
          );
        }
      }
    }
  }

  // Lambda destinations and dead-letter queues: the function's execution role delivers.
  for (const [configId, config] of ofType('AWS::Lambda::EventInvokeConfig')) {
    const fnId = idOf(config.Properties?.FunctionName);
    const roleId = fnId === undefined ? undefined : roleOfFunction(fnId);
    for (const kind of ['OnFailure', 'OnSuccess']) {
      const destination = config.Properties?.DestinationConfig?.[kind]?.Destination;
      if (destination === undefined) continue;
      walked.functionDestinations++;
      if (roleId === undefined) {
        problems.push(
          `${configId}: function ${render(config.Properties?.FunctionName)} or its role is not in this template`,
        );
        continue;
      }
      checkSendTo(roleId, destination, `function ${fnId} ${kind} destination`);
    }
  }
  for (const [fnId, fn] of ofType('AWS::Lambda::Function')) {
    const target = fn.Properties?.DeadLetterConfig?.TargetArn;
    if (target === undefined) continue;
    walked.functionDestinations++;
    const roleId = roleOfFunction(fnId);
    if (roleId === undefined) problems.push(`function ${fnId}: its role is not in this template`);
    else checkSendTo(roleId, target, `function ${fnId} dead-letter queue`);
  }

  // SNS -> Lambda: the function's resource policy.
  const permissions = ofType('AWS::Lambda::Permission').map(([, p]) => p.Properties ?? {});
  for (const [subscriptionId, subscription] of ofType('AWS::SNS::Subscription')) {
    const { Protocol: protocol, Endpoint: endpoint, TopicArn: topicArn } = subscription.Properties ?? {};
    if (protocol === 'email' || protocol === 'email-json') continue;
    if (protocol !== 'lambda') {
      problems.push(`subscription ${subscriptionId}: protocol ${protocol} is not checked by these rules`);
      continue;
    }
    walked.lambdaSubscriptions++;
    const fnId = idOf(endpoint);
    const granted = permissions.some(
      (p) =>
        fnId !== undefined &&
        idOf(p.FunctionName) === fnId &&
        matchesAction(p.Action, 'lambda:InvokeFunction') &&
        p.Principal === 'sns.amazonaws.com' &&
        (p.SourceArn === undefined || same(p.SourceArn, topicArn)),
    );
    if (!granted) {
      problems.push(
        `subscription ${subscriptionId}: no AWS::Lambda::Permission lets sns.amazonaws.com invoke ` +
          `${render(endpoint)} from ${render(topicArn)}`,
      );
    }
  }

  return { problems, walked };
}

function statementsOf(document: Json): Statement[] {
  const statements = document?.Statement ?? [];
  return Array.isArray(statements) ? statements : [statements];
}

const list = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/**
 * IAM's verdict for `request` under `statements`. With `resourcePolicy`, statements need a
 * matching principal. Returns 'allowed', 'denied' or false (no Allow applies).
 */
function decide(
  statements: Statement[],
  request: Request,
  resourcePolicy: boolean,
): 'allowed' | 'denied' | false {
  const applies = (s: Statement) =>
    (!resourcePolicy || matchesPrincipal(s.Principal, request.service)) &&
    list(s.Action).some((a) => matchesAction(a, request.action)) &&
    list(s.Resource ?? '*').some((r) => matchesResource(r, request.resource)) &&
    conditionsHold(s.Condition, request.context);
  if (statements.some((s) => s.Effect === 'Deny' && applies(s))) return 'denied';
  return statements.some((s) => s.Effect === 'Allow' && applies(s)) ? 'allowed' : false;
}

function matchesPrincipal(principal: Json, service: string | undefined): boolean {
  if (principal === '*' || list(principal?.AWS).includes('*')) return true;
  if (principal === undefined || service === undefined) return false;
  return list(principal.Service).some((s) => same(s, service));
}

function matchesAction(pattern: Json, action: string): boolean {
  return typeof pattern === 'string' && glob(pattern.toLowerCase()).test(action.toLowerCase());
}

function matchesResource(pattern: Json, resource: Json): boolean {
  if (pattern === '*' || same(pattern, resource)) return true;
  return glob(render(pattern)).test(render(resource));
}

/**
 * Condition operators as IAM evaluates them; a key missing from the request makes its condition
 * false (no `...IfExists` operators are used here).
 */
function conditionsHold(
  conditions: Statement['Condition'],
  context: Readonly<Record<string, string>>,
): boolean {
  for (const [operator, entries] of Object.entries(conditions ?? {})) {
    for (const [key, expected] of Object.entries(entries)) {
      const actual = Object.entries(context).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
      if (actual === undefined) return false;
      const values = list(expected).map(render);
      const hold =
        operator === 'StringEquals' || operator === 'ArnEquals' || operator === 'Bool'
          ? values.includes(actual)
          : operator === 'StringLike' || operator === 'ArnLike'
            ? values.some((v) => glob(v).test(actual))
            : false;
      if (!hold) return false;
    }
  }
  return true;
}

/** A CloudFormation expression as one comparable string: pseudo parameters and references as `${...}`. */
export function render(expr: Json): string {
  if (typeof expr === 'string') return expr;
  if (typeof expr?.Ref === 'string')
    return expr.Ref.startsWith('AWS::') ? `\${${expr.Ref}}` : `\${Ref:${expr.Ref}}`;
  if (expr?.['Fn::GetAtt']) return `\${${expr['Fn::GetAtt'].join('.')}}`;
  if (expr?.['Fn::Join']) {
    const [separator, parts] = expr['Fn::Join'];
    return (parts as Json[]).map(render).join(separator);
  }
  return JSON.stringify(expr);
}

/** How {@link render} writes a pseudo parameter. */
const pseudo = (name: string) => `\${${name}}`;

function same(a: Json, b: Json): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function glob(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}
