// A publisher for the sagaworks order service with amqplib, written from its AsyncAPI document.
// Registers a customer, restocks, places orders and awaits each command's Outcome on RabbitMQ's
// direct reply-to. Publishes are persistent, confirmed and mandatory: a command to a queue that
// does not exist is returned (basic.return) instead of vanishing. One JSON line per step.
//
//   SAGAWORKS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ SAGAWORKS_QUEUE_PREFIX= node publisher.js
'use strict';

const amqp = require('amqplib');
const { randomUUID } = require('crypto');

const URL = process.env.SAGAWORKS_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/';
const PREFIX = process.env.SAGAWORKS_QUEUE_PREFIX || '';
const TIMEOUT_MS = Number(process.env.OUTCOME_TIMEOUT || '30') * 1000;
const REPLY_TO = 'amq.rabbitmq.reply-to';
// The command queues and their actors, as the AsyncAPI document lists them.
const QUEUES = {
  customers: ['customers.commands', 'handle_customer_command'],
  orders: ['orders.commands', 'handle_order_command'],
  inventory: ['inventory.commands', 'handle_inventory_command'],
};

// The domain message: message_id is the idempotency key (keep it on a re-send).
function command(type, data) {
  const messageId = randomUUID();
  return {
    type,
    version: 1,
    message_id: messageId,
    correlation_id: messageId,
    causation_id: null,
    occurred_at: new Date().toISOString(),
    data,
  };
}

// Dramatiq's envelope: queue_name equals the routing key; the message is its one argument.
function envelope(context, message, queue) {
  const [base, actor] = QUEUES[context];
  return {
    queue_name: queue || PREFIX + base,
    actor_name: actor,
    args: [message],
    kwargs: {},
    options: {},
    message_id: message.message_id,
    message_timestamp: Date.now(),
  };
}

class Client {
  static async connect(url) {
    const client = new Client();
    client.connection = await amqp.connect(url);
    client.channel = await client.connection.createConfirmChannel();
    client.pending = new Map(); // correlation id -> resolve
    client.channel.on('return', (msg) => client.settle(msg.properties.correlationId, {
      outcome: 'returned',
      reason: `no queue '${msg.fields.routingKey}'`,
    }));
    await client.channel.consume(REPLY_TO, (msg) => {
      client.settle(msg.properties.correlationId, JSON.parse(msg.content.toString()));
    }, { noAck: true });
    return client;
  }

  settle(correlationId, answer) {
    const resolve = this.pending.get(correlationId);
    if (resolve) {
      this.pending.delete(correlationId);
      resolve(answer);
    }
  }

  // Publish and wait for the outcome (or the return of an unroutable message).
  async send(body) {
    const correlationId = randomUUID();
    const answer = new Promise((resolve) => {
      this.pending.set(correlationId, resolve);
      setTimeout(() => this.settle(correlationId, { outcome: 'no answer' }), TIMEOUT_MS).unref();
    });
    this.channel.publish('', body.queue_name, Buffer.from(JSON.stringify(body)), {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      replyTo: REPLY_TO,
      correlationId,
    });
    await this.channel.waitForConfirms();
    return answer;
  }

  async close() {
    await this.channel.close();
    await this.connection.close();
  }
}

function report(step, answer) {
  const line = { step };
  for (const key of ['outcome', 'token', 'error', 'reason']) {
    if (answer[key] !== undefined && answer[key] !== null) line[key] = answer[key];
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}

function order(customerId, price) {
  const address = {
    name: 'Ada', street: '1 Main St', city: 'Springfield', postal_code: '12345', country: 'US',
  };
  return command('PlaceOrder', {
    order_id: randomUUID(),
    customer_id: customerId,
    lines: [{ sku: 'JS-SKU-1', quantity: 2, unit_price: price }],
    shipping_address: address,
  });
}

async function main() {
  const client = await Client.connect(URL);
  const customerId = randomUUID();
  try {
    const register = command('RegisterCustomer', {
      customer_id: customerId, name: 'Ada', email: 'ada@example.com',
    });
    report('register', await client.send(envelope('customers', register)));
    const stock = command('AddStock', { sku: 'JS-SKU-1', quantity: 10 });
    report('restock', await client.send(envelope('inventory', stock)));
    const placed = order(customerId, '9.99');
    report('place', await client.send(envelope('orders', placed)));
    report('place again', await client.send(envelope('orders', placed)));
    report('unknown customer', await client.send(envelope('orders', order(randomUUID(), '1.00'))));
    report('money as a number', await client.send(envelope('orders', order(customerId, 9.99))));
    const missing = envelope('orders', order(customerId, '1.00'), PREFIX + 'no.such.queue');
    report('missing queue', await client.send(missing));
  } finally {
    await client.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exitCode = 1;
});
