// Remediator as a Container App of its own: one replica, or two with leader election on a
// blob lease (only the leader acts; the other observes, decides and records why it did not);
// or, with `shards`, up to ten replicas that split the estate by partition (a blob lease
// each), every partition's memory an audit log on the share.
//
// It starts in dry-run (`mode`), reads its policies from the image or from an Azure Files share,
// and keeps its audit log on an Azure Files share mounted at /var/lib/remediator; nothing else
// is written but /tmp. See docs/deploy.md for the whole procedure.
//
//   az deployment group create -g <rg> --template-file remediator-standalone.bicep \
//     --parameters environmentName=<env> storageAccountName=<account> image=<image@digest>

targetScope = 'resourceGroup'

@description('Name of the Container App to create for Remediator.')
param appName string = 'remediator'

@description('Region of the app and its identity.')
param location string = resourceGroup().location

@description('Name of an existing Container Apps environment in this resource group.')
param environmentName string

@description('The Remediator image, pinned by digest: REGISTRY/remediator:VERSION@sha256:DIGEST.')
param image string

@description('Registry to pull the image from with the managed identity (it needs AcrPull there); empty for a registry that needs no credential.')
param registryServer string = ''

@description('Resource ID of that registry when it is an Azure Container Registry: the identity this deployment creates is given AcrPull there before the app is created, so the first revision can pull its image. Empty: grant AcrPull yourself beforehand (or use a registry that needs no credential).')
param registryResourceId string = ''

@description('dry-run (the default) decides and records but changes nothing; live acts.')
@allowed([
  'dry-run'
  'live'
])
param mode string = 'dry-run'

@description('1, or 2 for a standby that takes over within the lease time (leader election is then always on); with shards, up to 10 replicas that split the estate (with the default budgets and 32 partitions, 8 can all act: a share under one action is not ready).')
@minValue(1)
@maxValue(10)
param replicas int = 1

@description('Split the estate among the replicas: each acts for the targets of the partitions it holds (a blob lease each); each partition\'s memory is an audit log in partitions/ on the audit share. Exclusive with leader election.')
param shards bool = false

@description('With shards: how many partitions the estate is split into (the same for every replica, for ever: changing it moves targets between partition logs).')
@minValue(1)
@maxValue(1024)
param partitions int = 32

@description('With shards, when the estate ran as one replica before: its audit log, as a path on the audit share (replicas/<replica name>/audit.jsonl). Each partition log starts with its share of that memory, once; the log is only read. Empty: nothing is imported.')
param shardsImportFrom string = ''

@description('Elect a leader on a blob lease. Forced on with 2 replicas; on by default with 1 too, because a new revision runs beside the old one until it is ready.')
param leaderElection bool = true

@description('Storage account (in this resource group) for the audit share and, with leader election, the lease container.')
param storageAccountName string

@description('Azure Files share for the audit log (created if missing), mounted read-write at /var/lib/remediator.')
param auditShareName string = 'remediator-audit'

@description('Azure Files share holding the policy files (created if missing; upload the files before starting), mounted read-only at /etc/remediator/policies. Empty: the policies baked into the image.')
param policiesShareName string = ''

@description('Blob container for the leader lease (created if missing).')
param leaseContainerName string = 'remediator'

@description('Serve /metrics, /healthz, /readyz and the status page on internal ingress (reachable only inside the environment), for a Prometheus there.')
param internalIngress bool = true

@description('Optional Teams/Slack incoming webhook or action-group URL for escalations; kept as a Container Apps secret.')
@secure()
param escalationWebhook string = ''

@description('Name of the user-assigned managed identity.')
param identityName string = '${appName}-identity'

@description('CPU cores of the container (with memory, a pair Container Apps accepts).')
param cpu string = '0.25'

@description('Memory of the container.')
param memory string = '0.5Gi'

// The port the image's REMEDIATOR_LISTEN uses: probes, ingress and scrapes all point here.
var port = 9464
var electLeader = !shards && (leaderElection || replicas > 1)
var stateDir = '/var/lib/remediator'
var policiesDir = '/etc/remediator/policies'
var identityId = resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', identityName)
var webhookSecret = 'remediator-escalation-webhook'

// The audit log has exactly one writer. Each replica therefore keeps its own, under
// replicas/<replica name>/ on the share: a restarted container finds its log and its memory
// again; a new replica (a new revision, a reschedule) starts a log of its own. The pause file is
// shared, so `remediator pause` stops every replica at once.
var runScript = 'export REMEDIATOR_AUDIT_PATH="${stateDir}/replicas/$HOSTNAME/audit.jsonl"; exec remediator run'

resource managedEnv 'Microsoft.App/managedEnvironments@2024-03-01' existing = {
  name: environmentName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource auditShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: auditShareName
  properties: {
    shareQuota: 5
  }
}

resource policiesShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (!empty(policiesShareName)) {
  parent: fileService
  name: empty(policiesShareName) ? 'unused' : policiesShareName
  properties: {
    shareQuota: 1
  }
}

resource auditStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: managedEnv
  name: take('${appName}-audit', 32)
  properties: {
    azureFile: {
      accountName: storageAccountName
      accountKey: storage.listKeys().keys[0].value
      shareName: auditShare.name
      accessMode: 'ReadWrite'
    }
  }
}

resource policiesStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = if (!empty(policiesShareName)) {
  parent: managedEnv
  name: take('${appName}-policies', 32)
  properties: {
    azureFile: {
      accountName: storageAccountName
      accountKey: storage.listKeys().keys[0].value
      shareName: policiesShare.name
      accessMode: 'ReadOnly'
    }
  }
}

module remediatorIdentity 'identity-and-role.bicep' = {
  name: take('remediator-identity-${appName}', 64)
  params: {
    identityName: identityName
    location: location
    leaderElection: electLeader || shards // blob access to the lease container
    storageAccountName: storageAccountName
    leaseContainerName: leaseContainerName
  }
}

// AcrPull on the registry, before the app: its first revision pulls with this identity
module registryPull 'acr-pull.bicep' = if (!empty(registryResourceId)) {
  name: take('remediator-acrpull-${appName}', 64)
  scope: resourceGroup(split(registryResourceId, '/')[2], split(registryResourceId, '/')[4])
  params: {
    registryName: last(split(registryResourceId, '/'))
    principalId: remediatorIdentity.outputs.principalId
  }
}

var leaderEnv = electLeader ? [
  {
    name: 'REMEDIATOR_LEADER_ELECTION'
    value: string({
      enabled: true
      accountUrl: remediatorIdentity.outputs.leaseAccountUrl
      container: leaseContainerName
    })
  }
] : []

// each partition's audit log in partitions/ on the share every replica mounts (flock reaches
// the share: the SMB mount keeps byte-range locks on the server, never `nobrl`)
var shardsEnv = shards ? [
  {
    name: 'REMEDIATOR_SHARDS'
    value: string(union({
      enabled: true
      accountUrl: remediatorIdentity.outputs.leaseAccountUrl
      container: leaseContainerName
      partitions: partitions
      auditDir: '${stateDir}/partitions'
    }, empty(shardsImportFrom) ? {} : {
      importFrom: '${stateDir}/${shardsImportFrom}'
    }))
  }
] : []

var webhookEnv = empty(escalationWebhook) ? [] : [
  {
    name: 'REMEDIATOR_ESCALATION_WEBHOOK'
    secretRef: webhookSecret
  }
]

var env = concat([
  {
    name: 'REMEDIATOR_MODE'
    value: mode
  }
  {
    name: 'REMEDIATOR_CREDENTIAL'
    value: 'managedIdentity'
  }
  {
    name: 'REMEDIATOR_IDENTITY_CLIENT_ID'
    value: remediatorIdentity.outputs.clientId
  }
  {
    name: 'REMEDIATOR_LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'REMEDIATOR_LISTEN'
    value: '0.0.0.0:${port}'
  }
  {
    name: 'REMEDIATOR_POLICIES'
    value: policiesDir
  }
  {
    name: 'REMEDIATOR_PAUSE_FILE'
    value: '${stateDir}/remediator.pause'
  }
], leaderEnv, shardsEnv, webhookEnv)

var probes = [
  {
    // Opening the audit log verifies its whole hash chain first: allow it time.
    type: 'Startup'
    httpGet: {
      path: '/healthz'
      port: port
      scheme: 'HTTP'
    }
    initialDelaySeconds: 5
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 10
  }
  {
    // /healthz: every target's loop ticked within its own interval. A stalled loop is restarted.
    type: 'Liveness'
    httpGet: {
      path: '/healthz'
      port: port
      scheme: 'HTTP'
    }
    periodSeconds: 15
    timeoutSeconds: 5
    failureThreshold: 4
  }
  {
    // /readyz: policies loaded, a token from the identity, the audit writable, the role known.
    // Its token check may take up to 10 s, hence the timeout.
    type: 'Readiness'
    httpGet: {
      path: '/readyz'
      port: port
      scheme: 'HTTP'
    }
    periodSeconds: 15
    timeoutSeconds: 12
    failureThreshold: 3
  }
]

var policiesMount = empty(policiesShareName) ? [] : [
  {
    volumeName: 'remediator-policies'
    mountPath: policiesDir
  }
]

var volumeMounts = concat([
  {
    volumeName: 'remediator-state'
    mountPath: stateDir
  }
  {
    volumeName: 'remediator-tmp'
    mountPath: '/tmp'
  }
], policiesMount)

var policiesVolume = empty(policiesShareName) ? [] : [
  {
    name: 'remediator-policies'
    storageType: 'AzureFile'
    storageName: policiesStorage.name
    mountOptions: 'uid=0,gid=10001,dir_mode=0750,file_mode=0640'
  }
]

var volumes = concat([
  {
    name: 'remediator-state'
    storageType: 'AzureFile'
    storageName: auditStorage.name
    // The image runs as uid/gid 10001; only Remediator reads and writes this share.
    mountOptions: 'uid=10001,gid=10001,dir_mode=0750,file_mode=0640'
  }
  {
    name: 'remediator-tmp'
    storageType: 'EmptyDir'
  }
], policiesVolume)

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: managedEnv.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: internalIngress ? {
        external: false
        targetPort: port
        transport: 'http'
        allowInsecure: false
      } : null
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: identityId
        }
      ]
      secrets: empty(escalationWebhook) ? [] : [
        {
          name: webhookSecret
          value: escalationWebhook
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'remediator'
          image: image
          command: [
            '/bin/sh'
            '-c'
            runScript
          ]
          env: env
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          probes: probes
          volumeMounts: volumeMounts
        }
      ]
      // A fixed count: Remediator is not a workload to autoscale.
      scale: {
        minReplicas: replicas
        maxReplicas: replicas
      }
      volumes: volumes
    }
  }
  dependsOn: [
    remediatorIdentity
    registryPull
    auditStorage
    policiesStorage
  ]
}

output appName string = app.name
output identityClientId string = remediatorIdentity.outputs.clientId
output identityPrincipalId string = remediatorIdentity.outputs.principalId
output roleDefinitionId string = remediatorIdentity.outputs.roleDefinitionId
output internalFqdn string = app.properties.configuration.?ingress.?fqdn ?? ''
